"""Held-out splits by text: no held-out document has its exact text (or a copy of it) in training.

Amazon copies a review onto every variant of a product (same user, same text, other asin); a
split by document id put most held-out reviews' exact text in training.
"""

from __future__ import annotations

import gzip
import json

import pandas as pd

from pipelines.corpus import held_out, split_key
from pipelines.finetune import _labelled_texts, split_held_out
from tests.conftest import shared_file


def amazon_docs(name: str) -> pd.DataFrame:
    rows = []
    path = shared_file(f"amazon-reviews-2018-5core-small/{name}.json.gz")
    with gzip.open(path) as f:
        for i, line in enumerate(f):
            review = json.loads(line)
            text = (review.get("reviewText") or "").strip()
            if text:
                rows.append({"id": f"{name}:{i}", "kind": "review", "title": review.get("summary"),
                             "text": text, "rating": float(review["overall"]), "label": None,
                             "sentences": [text]})
    return pd.DataFrame(rows)


def test_split_key_folds_case_and_whitespace():
    assert split_key("  Great  card,\nthanks ") == split_key("great card, THANKS")
    assert split_key("Great card") != split_key("Great cards")


def test_finetune_held_out_reviews_have_no_exact_text_twin_in_training():
    docs = amazon_docs("All_Beauty_5")
    data, keys, whole, _ = _labelled_texts(docs, sentence_examples=True)
    train, test = split_held_out(keys, whole, data.texts, 0.1)
    assert len(test) > 100 and len(train) > 1000
    # Held-out examples are whole reviews (not a title or sentence of one).
    assert {data.texts[i] for i in test} <= set(docs["text"])
    held_texts = {split_key(data.texts[i]) for i in test}
    assert not held_texts & {split_key(data.texts[i]) for i in train}
    # The split by document id that this replaces leaked: the test can tell the two apart.
    by_id = held_out(docs["id"].tolist(), 0.1, salt="finetune")
    held_by_id = {split_key(t) for t, h in zip(docs["text"], by_id) if h}
    train_by_id = {split_key(t) for t, h in zip(docs["text"], by_id) if not h}
    assert len(held_by_id & train_by_id) > 0.5 * len(held_by_id)


def test_a_head_under_its_baseline_is_flagged():
    from pipelines.finetune import below_baseline

    def scores(acc, f1, base_acc, base_f1):
        return {"albert": {"accuracy": acc, "macro_f1": f1},
                "tfidf_lr": {"accuracy": base_acc, "macro_f1": base_f1}}

    assert below_baseline(scores(0.976, 0.494, 0.982, 0.426))  # Gift_Cards: accuracy under
    assert below_baseline(scores(0.99, 0.40, 0.98, 0.45))
    assert not below_baseline(scores(0.99, 0.50, 0.98, 0.45))


def test_reviews_without_a_rating_teach_sentiment_by_their_own_label():
    """Chinese review sets (waimai, online_shopping) label reviews 0/1 and carry no rating."""
    from albert_tf.classifier import SENTIMENT_LABELS, label_to_sentiment

    assert [label_to_sentiment(v) for v in ("0", "1", "positive", " NEG ", "3", None)] == [
        0, 2, 2, 0, None, None]
    docs = pd.DataFrame([
        {"kind": "review", "title": None, "text": "很快，好吃", "rating": None, "label": "1",
         "sentences": None},
        {"kind": "review", "title": None, "text": "送餐太慢了", "rating": None, "label": "0",
         "sentences": None},
        {"kind": "review", "title": None, "text": "一般般", "rating": None, "label": None,
         "sentences": None},  # neither: not an example
        {"kind": "review", "title": None, "text": "Fine.", "rating": 2.0, "label": "1",
         "sentences": None},  # a rating wins over a label
    ])
    data, _, whole, _ = _labelled_texts(docs, sentence_examples=True)
    assert data.texts == ["很快，好吃", "送餐太慢了", "Fine."] and all(whole)
    assert [SENTIMENT_LABELS[s] for s in data.sentiment] == ["positive", "negative", "negative"]
