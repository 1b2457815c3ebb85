"""Unlabelled in-domain texts for task distillation (`pipelines.quality.in_domain`,
`tasks.read_unlabelled`): none may be a held-out text, or a held-out figure would be measured on
something the student learnt from through its teacher."""

from __future__ import annotations

import pytest

from pipelines import tasks
from pipelines.quality.datasets import SHARED_DATA, Dataset, Example, load_dataset
from pipelines.quality.in_domain import (aspect_pairs, held_out_twins, in_domain_texts,
                                         news_texts, review_sentences, split_training_texts,
                                         text_key)


def _tiny() -> Dataset:
    return Dataset(name="tiny", task="classification", language="en", labels=["neg", "pos"],
                   train=[Example("Good screen.", "pos"), Example("Bad keys.", "neg")],
                   dev=[Example("Fine battery life.", "pos")],
                   test=[Example("The fan is loud.", "neg")],
                   metrics=("accuracy",), description="fixture")


def test_read_unlabelled_leaves_out_held_out_labelled_and_repeated_texts(tmp_path):
    path = tmp_path / "texts.txt"
    path.write_text("A new text here.\n\n  the FAN is   loud. \ngood screen.\nA new text here.\n"
                    "Another one, fine.\nfine battery LIFE.\n")
    data = _tiny()
    texts = tasks.read_unlabelled(path, data, [e.text for e in data.train], limit=10)
    assert texts == ["A new text here.", "Another one, fine."]
    assert len(tasks.read_unlabelled(path, data, [], limit=1)) == 1
    with pytest.raises(SystemExit, match="no such file"):
        tasks.read_unlabelled(tmp_path / "missing.txt", data, [], limit=10)
    (tmp_path / "held_out.txt").write_text("The fan is loud.\n")
    with pytest.raises(SystemExit, match="no text left"):
        tasks.read_unlabelled(tmp_path / "held_out.txt", data, [], limit=10)
    # Pairs: one sentence may come with several terms; a held-out sentence is left out with any.
    (tmp_path / "pairs.txt").write_text("Nice fan, bad keys.\tfan\nNice fan, bad keys.\tkeys\n"
                                        "Nice fan, bad keys.\tfan\nThe fan is loud.\tfan\n")
    polarity = Dataset(**{**data.__dict__, "task": "aspect_polarity"})
    assert tasks.read_unlabelled(tmp_path / "pairs.txt", polarity, [], limit=10) == [
        "Nice fan, bad keys.\tfan", "Nice fan, bad keys.\tkeys"]


def test_unlabelled_texts_need_a_teacher_and_pairs_for_aspect_polarity(tmp_path):
    (tmp_path / "texts.txt").write_text("Some text.\n")
    options = tasks.TaskOptions(unlabelled=str(tmp_path / "texts.txt"))
    with pytest.raises(SystemExit, match="needs --teacher-model"):
        tasks.train_task(_tiny(), tmp_path / "no_preset", tmp_path / "model", options)
    pairs = Dataset(name="pairs", task="aspect_polarity", language="en", labels=["neg", "pos"],
                    train=[], dev=[], test=[], metrics=("accuracy",), description="fixture")
    options = tasks.TaskOptions(unlabelled=str(tmp_path / "texts.txt"), teacher_model="t")
    with pytest.raises(SystemExit, match="aspect polarity needs 'sentence<TAB>aspect term'"):
        tasks.train_task(pairs, tmp_path / "no_preset", tmp_path / "model", options)


def test_laptop_in_domain_texts_are_subjqa_reviews_and_never_held_out():
    data = load_dataset("semeval14_laptops_aspects", SHARED_DATA)
    texts = in_domain_texts(data, 3000)
    assert len(texts) == 3000 and len({text_key(t) for t in texts}) == 3000
    assert held_out_twins(texts, [*data.dev, *data.test]) == []
    assert held_out_twins(texts, data.train) == []  # all its training texts are labelled
    reviews = {text_key(t) for t in review_sentences("electronics")}
    assert all(text_key(t) in reviews for t in texts)
    assert all(len(t.split()) >= 3 for t in texts)
    assert in_domain_texts(data, 3000) == texts  # seeded


def test_unused_training_texts_of_a_subset_are_in_domain_texts():
    data = load_dataset("semeval14_restaurants_polarity", SHARED_DATA)
    used, unused = split_training_texts(data, 500, seed=0)
    assert len(used) == 500 and len(used) + len(unused) == len(data.train)
    lines = in_domain_texts(data, 100_000, max_train=500)
    # Aspect polarity takes pairs: each sentence with a training aspect term it names.
    pairs = [tasks.split_pair(line) for line in lines]
    terms = {e.target.lower() for e in data.train}
    assert all(term and term.lower() in terms and term in sentence for sentence, term in pairs)
    texts = [sentence for sentence, _ in pairs]
    keys = {text_key(t) for t in texts}
    assert not keys & {text_key(t) for t in used}
    assert held_out_twins(texts, [*data.dev, *data.test]) == []
    # Unused training sentences are among them (those that are not also labelled elsewhere),
    # and Yelp review sentences (SubjQA restaurants) are most of the rest.
    assert len(keys & {text_key(t) for t in unused}) > 100
    assert len(keys & {text_key(t) for t in review_sentences("restaurants")}) > 1000


def test_aspect_pairs_name_the_longest_training_term_as_the_sentence_spells_it():
    train = [Example("The battery life is long.", "positive", target="battery life"),
             Example("Nice battery.", "positive", target="battery"),
             Example("Loud fan.", "negative", target="fan")]
    sentences = ["My Battery Life was short.", "No aspect here at all.", "The fan and battery hum."]
    assert aspect_pairs(sentences, train, 10) == ["My Battery Life was short.\tBattery Life",
                                                  "The fan and battery hum.\tbattery"]
    assert aspect_pairs(sentences, train, 1) == ["My Battery Life was short.\tBattery Life"]


def test_a_news_set_draws_on_the_other_news_sets_and_never_on_its_own_texts():
    data = load_dataset("mind", SHARED_DATA)
    texts = in_domain_texts(data, 5000)
    assert len(texts) == 5000
    own = {text_key(e.text) for e in (*data.train, *data.dev, *data.test)}
    assert not own & {text_key(t) for t in texts}
    others = {text_key(t) for t in news_texts("mind")}
    assert all(text_key(t) in others for t in texts)
    assert news_texts("sst2") == []  # not news
