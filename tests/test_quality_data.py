"""pipelines.quality.datasets: EVAL.md's splits on the real files in ../shared/data.

Expected records are read here independently (csv module, plain line splitting) and compared with
what the harness built through the ingest parsers.
"""

from __future__ import annotations

import csv
from collections import Counter

import pytest

from pipelines.quality.datasets import (
    DATASETS,
    OOS,
    Example,
    clinc_rule,
    load_dataset,
    mod_rule,
    stratified_subset,
    train_file_rule,
)
from pipelines.records import clean_text
from tests.conftest import SHARED_DATA, shared_file


def test_split_rules():
    assert [mod_rule(i) for i in range(12)] == ["train"] * 8 + ["dev", "test"] + ["train"] * 2
    assert [train_file_rule(i) for i in (0, 8, 9, 19, 20)] == [
        "train", "train", "dev", "dev", "train"]
    assert clinc_rule(0, "oos_val") == "dev" and clinc_rule(0, "test") == "test"
    assert clinc_rule(0, "oos_train") is None


def test_registry_names():
    assert set(DATASETS) == {
        "sst2", "ag_news", "bbc", "mind", "chnsenticorp", "waimai", "thucnews", "banking77",
        "clinc150", "semeval14_laptops_aspects", "semeval14_restaurants_aspects",
        "semeval14_laptops_polarity", "semeval14_restaurants_polarity",
        "semeval15_restaurants_aspects", "semeval15_restaurants_polarity",
        "semeval16_restaurants_aspects", "semeval16_restaurants_polarity", "dong2014_twitter"}


def test_ag_news_mod_rule_matches_the_csv():
    path = shared_file("ag-news-test/test.csv")
    with open(path, encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    assert len(rows) == 7600
    names = ["World", "Sports", "Business", "Sci/Tech"]
    expected = {part: [(clean_text(f"{title} {body}"), names[int(label) - 1])
                       for i, (label, title, body) in enumerate(rows) if mod_rule(i) == part]
                for part in ("train", "dev", "test")}
    data = load_dataset("ag_news", SHARED_DATA)
    assert (len(data.train), len(data.dev), len(data.test)) == (6080, 760, 760)
    for part in ("train", "dev", "test"):
        assert [(e.text, e.label) for e in data.split(part)] == expected[part]
    assert data.labels == sorted(names) and data.language == "en"
    assert data.metrics == ("accuracy", "macro_f1") and data.rejected == 0


def test_thucnews_is_chinese_with_named_labels():
    folder = shared_file("thucnews-titles-10class")
    names = (folder / "class.txt").read_text(encoding="utf-8").split()
    lines = (folder / "dev.txt").read_text(encoding="utf-8").splitlines()
    data = load_dataset("thucnews", SHARED_DATA)
    assert data.language == "zh"
    assert (len(data.train), len(data.dev), len(data.test)) == (9000, 1000, 10000)
    title, label = lines[9].split("\t")  # i = 9: the first dev record
    assert data.dev[0] == Example(clean_text(title), names[int(label)])
    assert data.labels == sorted(names)
    assert Counter(e.label for e in data.test) == {name: 1000 for name in names}


def test_clinc_dev_and_test_hold_oos_but_labels_do_not():
    shared_file("clinc150-oos-eval/data_full.json")
    data = load_dataset("clinc150", SHARED_DATA)
    assert data.task == "intent" and data.metrics == ("accuracy", "oos_recall")
    assert (len(data.train), len(data.dev), len(data.test)) == (15000, 3100, 5500)
    assert OOS not in data.labels and len(data.labels) == 150
    assert not any(e.label == OOS for e in data.train)
    assert sum(e.label == OOS for e in data.dev) == 100
    assert sum(e.label == OOS for e in data.test) == 1000


def test_semeval15_spans_are_the_terms():
    shared_file("semeval2015-task12-absa")
    terms = load_dataset("semeval15_restaurants_aspects", SHARED_DATA)
    assert terms.labels == [] and terms.metrics == ("precision", "recall", "f1")
    assert (len(terms.train), len(terms.dev), len(terms.test)) == (1184, 131, 685)
    assert sum(not e.spans for e in terms.test) > 0  # sentences without terms are kept
    for example in terms.train + terms.dev + terms.test:
        assert example.label is None
        assert all(0 <= s < t <= len(example.text) for s, t in example.spans)
        assert list(example.spans) == sorted(set(example.spans))
    polarity = load_dataset("semeval15_restaurants_polarity", SHARED_DATA)
    assert polarity.labels == ["negative", "neutral", "positive"]
    for example in polarity.train + polarity.dev + polarity.test:
        (start, end), = example.spans
        assert example.text[start:end] == example.target
    # a term-extraction sentence gives as many polarity examples as it has agreeing spans
    assert len(polarity.test) <= sum(len(e.spans) for e in terms.test)


def test_dong_targets_and_sizes():
    shared_file("twitter-dong2014-tdsc")
    data = load_dataset("dong2014_twitter", SHARED_DATA)
    assert (len(data.train), len(data.dev), len(data.test)) == (5624, 624, 692)
    assert Counter(e.label for e in data.test) == {"neutral": 346, "negative": 173,
                                                   "positive": 173}
    for example in data.test:
        if example.spans:
            (start, end), = example.spans
            assert example.text[start:end] == example.target


def test_max_train_is_stratified_and_deterministic():
    shared_file("ag-news-test/test.csv")
    full = load_dataset("ag_news", SHARED_DATA)
    small = load_dataset("ag_news", SHARED_DATA, max_train=100)
    assert len(small.train) == 100
    assert small.train == load_dataset("ag_news", SHARED_DATA, max_train=100).train
    assert small.dev == full.dev and small.test == full.test
    shares = Counter(e.label for e in full.train)
    for label, n in Counter(e.label for e in small.train).items():
        assert abs(n - 100 * shares[label] / len(full.train)) <= 1
    positions = [full.train.index(e) for e in small.train]
    assert positions == sorted(positions)  # original order kept


def test_stratified_subset_keeps_every_label():
    examples = [Example(f"a{i}", "a") for i in range(97)] + [Example("b", "b"),
                                                             Example("c", "c")]
    subset = stratified_subset(examples, 10, seed=1)
    assert len(subset) == 10 and {e.label for e in subset} == {"a", "b", "c"}
    assert stratified_subset(examples, 500) == examples


# EVAL.md's splits as built on 2026-11-29: (train, dev, test) per dataset.
SIZES = {
    "sst2": (60615, 6734, 872), "ag_news": (6080, 760, 760), "bbc": (1781, 222, 222),
    "mind": (1600, 200, 200), "chnsenticorp": (6213, 776, 776), "waimai": (9591, 1198, 1198),
    "thucnews": (9000, 1000, 10000), "banking77": (9003, 1000, 3080),
    "clinc150": (15000, 3100, 5500),
    "semeval14_laptops_aspects": (2741, 304, 800),
    "semeval14_laptops_polarity": (2076, 237, 638),
    "semeval14_restaurants_aspects": (2737, 304, 800),
    "semeval14_restaurants_polarity": (3225, 377, 1120),
    "semeval15_restaurants_aspects": (1184, 131, 685),
    "semeval15_restaurants_polarity": (1080, 108, 525),
    "semeval16_restaurants_aspects": (1600, 200, 200),
    "semeval16_restaurants_polarity": (1363, 187, 164),
    "dong2014_twitter": (5624, 624, 692),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SIZES))
def test_every_dataset_has_its_recorded_sizes(name, shared_data):
    data = load_dataset(name, shared_data)
    assert (len(data.train), len(data.dev), len(data.test)) == SIZES[name]
    assert data.language == ("zh" if name in ("chnsenticorp", "waimai", "thucnews") else "en")
    for example in data.train[:50] + data.test[:50]:
        assert example.text and all(example.text[s:t] for s, t in example.spans)
