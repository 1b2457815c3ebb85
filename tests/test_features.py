"""The features job's profile logic: user aspect weights and per-item aspect profiles."""

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from pipelines.features import ItemProfileFn, UserProfileFn, explode_sentences, user_aspect_weights

ASPECTS = ["battery", "sound", "price"]


def review(item, user, mentions, embedding=(1.0, 0.0)):
    return {"item": item, "user": user, "embedding": list(embedding),
            "mentions": [{"aspect": a, "polarity": p, "sentence": s} for a, p, s in mentions]}


def test_user_weights_count_mentions_beyond_chance():
    # 10 reviews; everyone mentions battery in half their reviews, sound in 10%, price in 1%.
    weights = user_aspect_weights([5, 6, 1], 10, [0.5, 0.1, 0.01])
    # Excess beyond the chance band n*rate + sqrt(n*rate): 5-5-2.24 -> 0, 6-1-1, 1-0.1-0.32.
    excess = np.array([0.0, 4.0, 0.9 - np.sqrt(0.1)])
    np.testing.assert_allclose(weights, excess / excess.sum(), rtol=1e-6)
    # Within chance: 2 mentions where 1 is expected (give or take 1) is not a preference.
    assert user_aspect_weights([5, 2, 0], 10, [0.5, 0.1, 0.01]) == [0.0, 0.0, 0.0]


def test_item_profiles_average_polarity_and_quote_the_best_short_praise():
    docs = [
        review("i1", "u1", [("battery", 0.9, "The battery lasts forever."),
                            ("sound", -0.8, "The sound is muffled.")], (1.0, 0.0)),
        review("i1", "u2", [("battery", 0.9, "Battery is great, it lasts and lasts, I charge it "
                                               "once a week and it never lets me down."),
                            ("battery", 0.3, "Battery is fine.")], (0.0, 1.0)),
        review("i2", "u1", [("price", 0.5, "Good price.")]),
    ]
    with TestPipeline() as p:
        profiles = (p | beam.Create(docs) | beam.Map(lambda d: (d["item"], d))
                    | beam.CombinePerKey(ItemProfileFn(ASPECTS)))
        assert_that(profiles, equal_to([
            ("i1", {"n_reviews": 2, "embedding": [0.5, 0.5],
                    "aspect_score": [pytest.approx(0.7), -0.8, 0.0],
                    "aspect_count": [3, 1, 0], "aspect_positive": [3, 0, 0],
                    # equal polarity: the shorter sentence wins; negative mentions are never quoted
                    "aspect_sentence": ["The battery lasts forever.", "", ""]}),
            ("i2", {"n_reviews": 1, "embedding": [1.0, 0.0], "aspect_score": [0.0, 0.0, 0.5],
                    "aspect_count": [0, 0, 1], "aspect_positive": [0, 0, 1],
                    "aspect_sentence": ["", "", "Good price."]}),
        ]))


def test_quotes_prefer_confident_praise_of_the_aspect_alone():
    docs = [review("i1", "u1", [
        ("sound", 0.95, "Great sound but the battery dies."),
        ("battery", -0.9, "Great sound but the battery dies."),
        ("sound", 0.6, "The sound is good, I listen every day on the long train ride."),
        ("sound", 0.05, "Sound ok."),
    ])]
    fn = ItemProfileFn(ASPECTS)
    for doc in docs:  # mark which sentences mention more than one aspect, as doc_record does
        for m in doc["mentions"]:
            m["alone"] = sum(o["sentence"] == m["sentence"] for o in doc["mentions"]) == 1
    out = fn.extract_output(fn.add_input(fn.create_accumulator(), docs[0]))
    assert out["aspect_sentence"][1] == ("The sound is good, I listen every day on the long "
                                         "train ride.")
    assert out["aspect_positive"][1] == 2  # 0.95 and 0.6 praise; 0.05 is lukewarm
    assert out["aspect_sentence"][0] == ""  # the battery is only criticised


def test_a_sentence_the_encoder_likes_but_a_reader_does_not_is_never_quoted():
    """The real-data spot check: a weak encoder gave "the sole fell apart" +0.73 for the sole."""
    fn = ItemProfileFn(["sole", "size"], {"size": ["size", "small"]})
    doc = review("i1", "u1", [("sole", 0.73, "Terrible quality, the sole fell apart in a week."),
                              ("size", 0.94, "Runs small, I had to return them."),
                              ("size", 0.5, "The size is perfect.")])
    out = fn.extract_output(fn.add_input(fn.create_accumulator(), doc))
    assert out["aspect_sentence"] == ["", "The size is perfect."]
    assert out["aspect_positive"] == [1, 2]  # the encoder's count is kept as it is


def test_an_aspect_mostly_criticised_has_no_quote():
    doc = review("i1", "u1", [("price", 0.8, "Great price."), ("price", -0.7, "Way too pricey."),
                              ("price", -0.9, "Overpriced."), ("price", 0.05, "Price is ok.")])
    fn = ItemProfileFn(ASPECTS)
    out = fn.extract_output(fn.add_input(fn.create_accumulator(), doc))
    assert out["aspect_positive"][2] == 1 and out["aspect_count"][2] == 4
    assert out["aspect_sentence"][2] == ""


def test_user_profiles_count_each_aspect_once_per_review():
    fn = UserProfileFn(ASPECTS)
    acc = fn.create_accumulator()
    acc = fn.add_input(acc, review("i1", "u1", [("battery", 0.5, "a"), ("battery", -0.5, "b")]))
    other = fn.add_input(fn.create_accumulator(), review("i2", "u1", [("sound", 0.5, "c")]))
    out = fn.extract_output(fn.merge_accumulators([acc, other]))
    assert out["n_reviews"] == 2 and out["aspect_count"] == [1, 1, 0]


def test_sentences_are_keyed_by_document_and_position():
    doc = {"id": "reviews.json.gz:7", "text": "A. B.", "sentences": ["A.", " ", "B."]}
    assert list(explode_sentences(doc)) == [("reviews.json.gz:7\t0", "A."),
                                            ("reviews.json.gz:7\t2", "B.")]


def test_missing_item_titles_become_empty_strings(tmp_path):
    """Metadata whose titles cleaning emptied reads back as NaN; the items table needs strings."""
    import pandas as pd

    from pipelines.features import _item_titles

    pd.DataFrame({"item": ["a", "b", ""], "title": ["Vogue", None, "x"]}).to_parquet(
        tmp_path / "items-0.parquet")
    assert _item_titles(tmp_path) == {"a": "Vogue", "b": ""}


def test_lukewarm_mentions_do_not_hide_praise_and_low_stars_are_no_praise():
    """An aspect praised once and otherwise mentioned in passing is quotable (praise outnumbers
    criticism); a praising sentence from a 1-2 star review is not quoted (the stars disagree)."""
    fn = ItemProfileFn(ASPECTS)
    doc = review("i1", "u1", [("price", 0.8, "Great price."), ("price", 0.05, "Price is $20."),
                              ("price", 0.0, "The price went up.")])
    out = fn.extract_output(fn.add_input(fn.create_accumulator(), doc))
    assert out["aspect_sentence"][2] == "Great price."
    tied = review("i1", "u1", [("price", 0.8, "Great price."), ("price", -0.8, "Overpriced.")])
    out = fn.extract_output(fn.add_input(fn.create_accumulator(), tied))
    assert out["aspect_sentence"][2] == ""  # criticised as often as praised
    low = {**review("i1", "u2", [("sound", 0.9, "The sound is great.")]), "rating": 2.0}
    high = {**review("i1", "u3", [("sound", 0.6, "Nice sound.")]), "rating": 4.0}
    acc = fn.add_input(fn.create_accumulator(), low)
    assert fn.extract_output(acc)["aspect_sentence"][1] == ""
    out = fn.extract_output(fn.merge_accumulators([acc, fn.add_input(fn.create_accumulator(),
                                                                     high)]))
    assert out["aspect_sentence"][1] == "Nice sound." and out["aspect_positive"][1] == 2


def test_inference_runs_similar_lengths_together_and_returns_each_text_its_own_outputs():
    """The handler sorts a bundle by length into sub-batches (the model trims each call to its
    longest text) and must hand every text back the outputs computed for it."""
    import tensorflow as tf

    from pipelines.features import SavedModelHandler

    calls = []

    def model(text):
        calls.append([t.decode() for t in text.numpy()])
        return {"length": tf.strings.length(text), "echo": text,
                "pair": tf.stack([tf.strings.length(text), 2 * tf.strings.length(text)], 1)}

    texts = ["x" * n for n in (7, 1, 30, 4, 4, 12, 2, 25, 9, 3)]
    handler = SavedModelHandler("unused", sub_batch_size=4)
    results = list(handler.run_inference(texts, model))
    assert [r.example for r in results] == texts
    for r in results:
        assert r.inference["echo"].decode() == r.example
        assert r.inference["length"] == len(r.example)
        assert list(r.inference["pair"]) == [len(r.example), 2 * len(r.example)]
    assert [len(c) for c in calls] == [4, 4, 2]
    flat = [len(t) for c in calls for t in c]
    assert flat == sorted(flat)
    assert list(handler.run_inference([], model)) == []


def test_a_lexicon_newer_than_the_fine_tuned_model_is_warned_about(caplog):
    """The aspect list is baked into text_features at finetune; features says when vocab has
    mined another one since, and is quiet when they agree."""
    import logging

    from pipelines.features import _warn_if_lexicon_moved

    with caplog.at_level(logging.WARNING, logger="opinionrec"):
        _warn_if_lexicon_moved(["price", "size"], ["size", "price"])
    assert not caplog.records
    with caplog.at_level(logging.WARNING, logger="opinionrec"):
        _warn_if_lexicon_moved(["price", "lightning"], ["price", "fit"])
    (record,) = caplog.records
    assert "lightning" in record.getMessage() and "fit" in record.getMessage()
    assert "finetune" in record.getMessage()


def test_documents_lost_between_sentences_and_docs_fail_the_stage(tmp_path, monkeypatch):
    """A runner that drops document rows must not pass for a finished job."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipelines import beam_counts, features as features_lib

    (tmp_path / "docs").mkdir()
    pq.write_table(pa.table({"doc_id": ["a", "b"]}), tmp_path / "docs" / "docs-0.parquet")
    counted = {("features", "docs_with_sentences"): 2}
    monkeypatch.setattr(beam_counts, "counter_values", lambda result, namespaces: counted)
    features_lib._reconcile(None, tmp_path)  # 2 == 2
    counted[("features", "docs_with_sentences")] = 3
    with pytest.raises(beam_counts.NotReconciled, match="3 documents have sentences but 2"):
        features_lib._reconcile(None, tmp_path)
