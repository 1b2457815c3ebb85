"""The evaluation datasets of ../shared/EVAL.md, split exactly as it says.

Files are read with the ingest job's own readers and parsers (`pipelines.ingest.formats`), so the
harness sees the text the pipelines see (cleaned the same way) and `i`, EVAL.md's 0-based record
index, is the ingest `source_position` (header not counted; folders in sorted path order; one
`<sentence>` per SemEval record; three lines per Dong-2014 record). A record the parser rejects
(ChnSentiCorp has one empty review, i = 6374) is skipped and counted in `Dataset.rejected`; it
keeps its index, so the split of every other record is unchanged.

Split rules ("mod": `i % 10 <= 7` train, `== 8` dev, `== 9` test; "train file": `i % 10 == 9` of
the training file is dev, the rest train):

- sst2: train file `train_full.tsv`, test `dev.tsv` (872); ag_news, bbc, mind, chnsenticorp,
  waimai: mod over the one file; thucnews: train file `dev.txt`, test `test.txt`; banking77:
  train file `train.csv`, test `test.csv`.
- clinc150: train = `train` (in-scope only; `oos_train` is not used), dev = `val` + `oos_val`,
  test = `test` + `oos_test`; out-of-scope examples are labelled "oos", which is not in `labels`.
- semeval14_*: train file `*Train_v2.xml` (sentences), test `*Test_Gold.xml`.
- semeval15_restaurants_*: not in EVAL.md's table; by analogy with 2014, train file
  `ABSA-15_Restaurants_Train_Final.xml` (sentence `i % 10 == 9` dev), test
  `ABSA15_Restaurants_Test.xml`. (The 2015 Laptops files have categories only, no target terms.)
- semeval16_restaurants_*: only the 2016 *training* file exists here
  (`ABSA16_Restaurants_Train_SB1_v2.xml`, which is the 2015 train + test sets), so the mod rule
  over its sentences. Its test part overlaps semeval15's training data: never train on one and
  test on the other.
- dong2014_twitter: train file `train.raw`, test `test.raw`.

Tasks: "classification" and "intent" (one label per text), "aspect_terms" (one Example per
sentence with the gold term spans, sentences without terms kept: they count for precision) and
"aspect_polarity" (one Example per sentence and distinct term span; `target` = the term; a
"conflict" term is dropped, and so, in 2015/16 where a target can carry several opinions, is a
span whose opinions disagree). Terms without a span (target "NULL") are left out of both.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import random
from collections import defaultdict
from pathlib import Path
from typing import Callable, Mapping, Sequence

import apache_beam as beam

from pipelines.ingest.formats import REGISTRY
from pipelines.ingest.parsing import ParseOptions
from pipelines.ingest.reading import ReadRecordsFn
from pipelines.records import Document, clean_text

log = logging.getLogger("opinionrec")

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = Path(
    os.environ.get("OPINIONREC_SHARED_DATA", REPO_ROOT.parent / "shared" / "data")
)
OOS = "oos"
POLARITY_LABELS = ("negative", "neutral", "positive")
SPLITS = ("train", "dev", "test")


@dataclasses.dataclass(frozen=True)
class Example:
    """One evaluation example.

    Attributes:
        text: the (cleaned) text.
        label: the class name ("positive", "sport", "oos", ...); None for aspect-term extraction.
        target: the aspect/target term of a target-polarity example.
        spans: gold aspect-term (start, end) character spans in `text` (aspect extraction), or the
            target's span (aspect polarity; empty when the source gives none).
    """

    text: str
    label: str | None = None
    target: str | None = None
    spans: tuple[tuple[int, int], ...] = ()


@dataclasses.dataclass
class Dataset:
    """A dataset split as EVAL.md says (see the module docstring)."""

    name: str
    task: str  # "classification" | "intent" | "aspect_terms" | "aspect_polarity"
    language: str  # "en" | "zh"
    labels: list[str]  # sorted class names; intent: in-scope only; aspect_terms: []
    train: list[Example]
    dev: list[Example]
    test: list[Example]
    metrics: tuple[str, ...]
    description: str
    rejected: int = 0  # records the ingest parser rejected (skipped)

    def split(self, part: str) -> list[Example]:
        """`train`, `dev` or `test` by name."""
        if part not in SPLITS:
            raise ValueError(f"`part` must be one of {SPLITS}. Received: {part!r}")
        return getattr(self, part)


# === Split rules: (i, member) -> "train" | "dev" | "test" | None (not used) ===

SplitRule = Callable[[int, str | None], str | None]


def mod_rule(i: int, member: str | None = None) -> str:
    """EVAL.md's mod rule: `i % 10 <= 7` train, `== 8` dev, `== 9` test."""
    return "train" if i % 10 <= 7 else "dev" if i % 10 == 8 else "test"


def train_file_rule(i: int, member: str | None = None) -> str:
    """A training file: `i % 10 == 9` is dev (for early stopping / model choice), the rest train."""
    return "dev" if i % 10 == 9 else "train"


def test_file_rule(i: int, member: str | None = None) -> str:
    return "test"


def clinc_rule(i: int, member: str | None = None) -> str | None:
    """CLINC150's own parts: in-scope train; val + oos_val; test + oos_test (oos_train unused)."""
    return {"train": "train", "val": "dev", "oos_val": "dev", "test": "test",
            "oos_test": "test"}.get(member or "")


# === Reading records with the ingest parsers ===

Row = tuple[int, str | None, bytes, Document]  # (i, member, raw record, parsed document)


def read_documents(
    path: Path, format_name: str, columns: Mapping[str, str] | None = None
) -> tuple[list[Row], int]:
    """Every parsed record of `path` with its index `i`, and the number of rejected records."""
    reader = ReadRecordsFn(format_name)
    reader.setup()
    options = ParseOptions(scrub_pii=False, columns=dict(columns or {}))
    parser = REGISTRY[format_name].parser(id_prefixes={}, options=options)
    parser.setup()
    rows: list[Row] = []
    rejected = 0
    for element in reader.process(str(path)):
        _, position, raw, member = element
        for out in parser.process(element):
            if isinstance(out, beam.pvalue.TaggedOutput):
                rejected += 1
                log.info("quality: %s record %d rejected: %s", path, position,
                         out.value["detail"])
            else:
                rows.append((position, member, raw, out))
    return rows, rejected


@functools.lru_cache(maxsize=8)
def _cached_documents(path: Path, format_name: str) -> tuple[list[Row], int]:
    """`read_documents`, once per file and process (the SemEval aspect-term and polarity sets
    share their files)."""
    return read_documents(path, format_name)


# === Documents -> examples ===

ToExamples = Callable[[Document, bytes, Mapping[str, str]], list[Example]]


def _label(doc: Document, names: Mapping[str, str]) -> str:
    label = doc["label"] or ""
    return names.get(label, label)


def text_only(doc: Document, raw: bytes, names: Mapping[str, str]) -> list[Example]:
    return [Example(doc["text"], _label(doc, names))]


def title_and_text(doc: Document, raw: bytes, names: Mapping[str, str]) -> list[Example]:
    """AG News (title + description), BBC (first line + body)."""
    text = " ".join(t for t in (doc["title"], doc["text"]) if t)
    return [Example(text, _label(doc, names))]


def mind_title_abstract(doc: Document, raw: bytes, names: Mapping[str, str]) -> list[Example]:
    """MIND: title + " " + abstract. (The ingest parser's text is the abstract, or the title
    when the abstract is empty, so the abstract is taken from the raw record.)"""
    abstract = clean_text(raw.decode("utf-8").split("\t")[4])
    text = " ".join(t for t in (doc["title"], abstract) if t)
    return [Example(text, _label(doc, names))]


def _term_spans(doc: Document) -> dict[tuple[int, int], list[dict]]:
    """The aspect terms with a real span, grouped by span (2015/16 repeat a target per opinion)."""
    spans: dict[tuple[int, int], list[dict]] = defaultdict(list)
    for aspect in doc["aspects"]:
        if aspect["term"] and aspect["start"] >= 0 and aspect["end"] > aspect["start"]:
            spans[(aspect["start"], aspect["end"])].append(aspect)
    return spans


def aspect_terms(doc: Document, raw: bytes, names: Mapping[str, str]) -> list[Example]:
    """One example per sentence: its distinct term spans, sorted (none is fine)."""
    return [Example(doc["text"], None, None, tuple(sorted(_term_spans(doc))))]


def aspect_polarity(doc: Document, raw: bytes, names: Mapping[str, str]) -> list[Example]:
    """One example per distinct term span whose polarity is positive, negative or neutral."""
    examples = []
    for (start, end), aspects in sorted(_term_spans(doc).items()):
        polarities = {a["polarity"] for a in aspects}
        if len(polarities) != 1 or not polarities <= set(POLARITY_LABELS):
            continue  # conflict, disagreeing opinions on one span, or no polarity (blind files)
        examples.append(Example(doc["text"], polarities.pop(), doc["text"][start:end],
                                ((start, end),)))
    return examples


def target_polarity(doc: Document, raw: bytes, names: Mapping[str, str]) -> list[Example]:
    """Dong-2014: the record's one target (its first occurrence's span, if found)."""
    aspect = doc["aspects"][0]
    spans = ((aspect["start"], aspect["end"]),) if aspect["start"] >= 0 else ()
    return [Example(doc["text"], doc["label"], aspect["term"], spans)]


# === Label names ===

LabelNames = Callable[[Path], Mapping[str, str]]


def no_names(data_dir: Path) -> Mapping[str, str]:
    return {}


def binary_sentiment(data_dir: Path) -> Mapping[str, str]:
    """SST-2 and the sophonplus CSVs: 0 = negative, 1 = positive (their SOURCE.md)."""
    return {"0": "negative", "1": "positive"}


def names_from_file(relative: str, first: int) -> LabelNames:
    """Label index -> name from a class list, one name a line, numbered from `first`."""

    def names(data_dir: Path) -> Mapping[str, str]:
        lines = (data_dir / relative).read_text(encoding="utf-8").split("\n")
        return {str(n): name.strip() for n, name in enumerate(lines, first) if name.strip()}

    return names


# === The registry ===


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """How to build one dataset: its files (relative path, split rule), parser and examples."""

    name: str
    task: str
    language: str
    metrics: tuple[str, ...]
    description: str
    files: tuple[tuple[str, SplitRule], ...]
    format: str
    to_examples: ToExamples
    label_names: LabelNames = no_names


ACC_F1 = ("accuracy", "macro_f1")
SPAN_PRF = ("precision", "recall", "f1")


def _semeval_specs(year: str, domain: str, files: tuple[tuple[str, SplitRule], ...],
                   rule_text: str) -> list[DatasetSpec]:
    """The aspect-term and aspect-polarity datasets of one SemEval file set."""
    key = f"semeval{year}_{domain.lower()}"
    return [
        DatasetSpec(f"{key}_aspects", "aspect_terms", "en", SPAN_PRF,
                    f"SemEval-20{year} {domain} aspect terms, exact-span P/R/F1; {rule_text}",
                    files, "semeval-absa", aspect_terms),
        DatasetSpec(f"{key}_polarity", "aspect_polarity", "en", ACC_F1,
                    f"SemEval-20{year} {domain} aspect-term polarity (pos/neg/neu, conflict "
                    f"dropped); {rule_text}", files, "semeval-absa", aspect_polarity),
    ]


S14, S15, S16 = "semeval2014-task4-absa", "semeval2015-task12-absa", "semeval2016-task5-absa-train"
THUC = "thucnews-titles-10class"
SOPHON = "chinese-sentiment-sophonplus"

_SPECS = [
    DatasetSpec("sst2", "classification", "en", ACC_F1,
                "sst2-glue/train_full.tsv (i % 10 == 9 dev) / dev.tsv as test",
                (("sst2-glue/train_full.tsv", train_file_rule),
                 ("sst2-glue/dev.tsv", test_file_rule)),
                "table", text_only, binary_sentiment),
    DatasetSpec("ag_news", "classification", "en", ACC_F1,
                "ag-news-test/test.csv, mod rule; text = title + description",
                (("ag-news-test/test.csv", mod_rule),), "table", title_and_text,
                names_from_file("ag-news-test/classes.txt", 1)),
    DatasetSpec("bbc", "classification", "en", ACC_F1,
                "bbc-news-greene2006/ articles, mod rule over sorted paths; text = title + body",
                (("bbc-news-greene2006", mod_rule),), "textdir", title_and_text),
    DatasetSpec("mind", "classification", "en", ACC_F1,
                "mind-small-train-sample/news.tsv, mod rule; category of title + abstract",
                (("mind-small-train-sample/news.tsv", mod_rule),), "mind-news",
                mind_title_abstract),
    DatasetSpec("chnsenticorp", "classification", "zh", ACC_F1,
                f"{SOPHON}/ChnSentiCorp_htl_all.csv, mod rule",
                ((f"{SOPHON}/ChnSentiCorp_htl_all.csv", mod_rule),), "table", text_only,
                binary_sentiment),
    DatasetSpec("waimai", "classification", "zh", ACC_F1,
                f"{SOPHON}/waimai_10k.csv, mod rule",
                ((f"{SOPHON}/waimai_10k.csv", mod_rule),), "table", text_only, binary_sentiment),
    DatasetSpec("thucnews", "classification", "zh", ACC_F1,
                f"{THUC}/dev.txt (i % 10 == 9 dev) / test.txt",
                ((f"{THUC}/dev.txt", train_file_rule), (f"{THUC}/test.txt", test_file_rule)),
                "table", text_only, names_from_file(f"{THUC}/class.txt", 0)),
    DatasetSpec("banking77", "classification", "en", ACC_F1,
                "banking77/train.csv (i % 10 == 9 dev) / test.csv",
                (("banking77/train.csv", train_file_rule), ("banking77/test.csv", test_file_rule)),
                "table", text_only),
    DatasetSpec("clinc150", "intent", "en", ("accuracy", "oos_recall"),
                "clinc150-oos-eval/data_full.json: train (in-scope) / val + oos_val / "
                "test + oos_test; out-of-scope labelled 'oos'",
                (("clinc150-oos-eval/data_full.json", clinc_rule),), "clinc", text_only),
    *_semeval_specs("14", "Laptops", ((f"{S14}/Laptop_Train_v2.xml", train_file_rule),
                                      (f"{S14}/Laptops_Test_Gold.xml", test_file_rule)),
                    "Laptop_Train_v2.xml (sentence i % 10 == 9 dev) / Laptops_Test_Gold.xml"),
    *_semeval_specs("14", "Restaurants", ((f"{S14}/Restaurants_Train_v2.xml", train_file_rule),
                                          (f"{S14}/Restaurants_Test_Gold.xml", test_file_rule)),
                    "Restaurants_Train_v2.xml (sentence i % 10 == 9 dev) / "
                    "Restaurants_Test_Gold.xml"),
    *_semeval_specs("15", "Restaurants",
                    ((f"{S15}/ABSA-15_Restaurants_Train_Final.xml", train_file_rule),
                     (f"{S15}/ABSA15_Restaurants_Test.xml", test_file_rule)),
                    "ABSA-15_Restaurants_Train_Final.xml (sentence i % 10 == 9 dev) / "
                    "ABSA15_Restaurants_Test.xml (not in EVAL.md: the 2014 rule)"),
    *_semeval_specs("16", "Restaurants",
                    ((f"{S16}/ABSA16_Restaurants_Train_SB1_v2.xml", mod_rule),),
                    "ABSA16_Restaurants_Train_SB1_v2.xml (= 2015 train + test), mod rule over "
                    "sentences (not in EVAL.md; no 2016 test file here)"),
    DatasetSpec("dong2014_twitter", "aspect_polarity", "en", ACC_F1,
                "twitter-dong2014-tdsc/train.raw (i % 10 == 9 dev) / test.raw; target polarity",
                (("twitter-dong2014-tdsc/train.raw", train_file_rule),
                 ("twitter-dong2014-tdsc/test.raw", test_file_rule)),
                "dong-twitter", target_polarity),
]
DATASETS: dict[str, DatasetSpec] = {spec.name: spec for spec in _SPECS}


# === Loading ===


def _parts(spec: DatasetSpec, data_dir: Path) -> tuple[dict[str, list[Example]], int]:
    """The examples of each split of `spec` and the number of records the parsers rejected."""
    names = spec.label_names(data_dir)
    parts: dict[str, list[Example]] = {part: [] for part in SPLITS}
    rejected = 0
    for relative, rule in spec.files:
        path = data_dir / relative
        if not path.exists():
            raise FileNotFoundError(
                f"{spec.name}: {path} not found (the datasets live in ../shared/data; "
                "set OPINIONREC_SHARED_DATA to point elsewhere)"
            )
        rows, skipped = _cached_documents(path, spec.format)
        rejected += skipped
        for position, member, raw, doc in rows:
            part = rule(position, member)
            if part is not None:
                parts[part].extend(spec.to_examples(doc, raw, names))
    return parts, rejected


def _label_list(spec: DatasetSpec, parts: Mapping[str, list[Example]]) -> list[str]:
    if spec.task == "aspect_terms":
        return []
    labels = {e.label for examples in parts.values() for e in examples if e.label is not None}
    return sorted(labels - {OOS}) if spec.task == "intent" else sorted(labels)


@functools.lru_cache(maxsize=4)
def _load_full(name: str, data_dir: Path) -> Dataset:
    spec = DATASETS[name]
    parts, rejected = _parts(spec, data_dir)
    return Dataset(name=name, task=spec.task, language=spec.language,
                   labels=_label_list(spec, parts), train=parts["train"], dev=parts["dev"],
                   test=parts["test"], metrics=spec.metrics, description=spec.description,
                   rejected=rejected)


def stratified_subset(examples: Sequence[Example], n: int, seed: int = 0) -> list[Example]:
    """`n` of `examples`, each label keeping its share (largest remainder, at least one per label
    when `n` allows), chosen by a seeded shuffle within each label; in their original order."""
    if n >= len(examples):
        return list(examples)
    if n <= 0:
        return []
    groups: dict[str | None, list[int]] = defaultdict(list)
    for index, example in enumerate(examples):
        groups[example.label].append(index)
    keys = sorted(groups, key=lambda k: (k is None, k or ""))
    exact = {k: n * len(groups[k]) / len(examples) for k in keys}
    quota = {k: int(exact[k]) for k in keys}
    by_remainder = sorted(keys, key=lambda k: (quota[k] - exact[k], keys.index(k)))
    for k in by_remainder[: n - sum(quota.values())]:
        quota[k] += 1
    for k in keys:  # every label at least once, taken from the largest quota
        if quota[k] == 0 and n >= len(keys):
            donor = max(keys, key=lambda d: quota[d])
            quota[donor] -= 1
            quota[k] = 1
    rng = random.Random(seed)
    chosen: list[int] = []
    for k in keys:
        indices = list(groups[k])
        rng.shuffle(indices)
        chosen += indices[: quota[k]]
    return [examples[i] for i in sorted(chosen)]


def load_dataset(
    name: str, data_dir: Path = SHARED_DATA, max_train: int | None = None, seed: int = 0
) -> Dataset:
    """The dataset `name` (a key of DATASETS) with EVAL.md's splits.

    `max_train` keeps that many training examples, label-stratified by a seeded shuffle (see
    `stratified_subset`), for fast tests and budgeted runs; dev and test are never cut. Parsed
    datasets are cached per process; the returned lists are fresh copies.
    """
    if name not in DATASETS:
        raise KeyError(f"Unknown dataset {name!r}. Known: {', '.join(DATASETS)}")
    full = _load_full(name, Path(data_dir).resolve())
    train = full.train if max_train is None else stratified_subset(full.train, max_train, seed)
    return dataclasses.replace(full, labels=list(full.labels), train=list(train),
                               dev=list(full.dev), test=list(full.test))
