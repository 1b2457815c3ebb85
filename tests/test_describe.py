"""Item descriptions: pros and cons with counts and quotes, the encoder, the words and the stars
agreeing; one product described once."""

from __future__ import annotations

import pandas as pd

from pipelines.describe import Description, Point, aspect_points, describe_items

TERMS = {"battery": ["battery"], "sound": ["sound"], "fit": ["fit"]}


def test_pros_need_a_praising_majority_and_a_quote_a_reader_takes_as_praise():
    pros, cons = aspect_points([
        ("sound", 0.9, "The sound is great.", 5.0),
        ("sound", 0.8, "Sound is amazing, truly wonderful sound!", 5.0),
        ("sound", -0.5, "The sound is muffled.", 2.0),
        ("battery", 0.9, "I would have liked a better battery.", 4.0),  # a wish: no quote
        ("battery", 0.8, "Battery is fine.", 4.0),
        ("battery", -0.9, "The battery died.", 1.0),
        ("battery", -0.9, "Battery life is bad.", 2.0),
    ], TERMS)
    assert [(p.aspect, p.mentions, p.praised, p.criticised) for p in pros] == [("sound", 3, 2, 1)]
    assert pros[0].quote == "The sound is great."  # the most positive praising sentence
    # battery: 2 praising of 4 is no majority; 2 criticising of 4 with a criticising quote is a con
    assert [(c.aspect, c.criticised, c.quote) for c in cons] == [
        ("battery", 2, "The battery died.")]


def test_a_quote_whose_stars_disagree_is_not_evidence():
    # The encoder and the words call it criticism, but the reviewer gave 5 stars (a mixed review
    # of another aspect, or a misread): no con without a quote from a review rated 3 or less.
    mentions = [("fit", -0.8, "The fit is bad on others but fine for me.", 5.0),
                ("fit", -0.9, "Tight fit, a terrible one.", 5.0)]
    assert aspect_points(mentions, TERMS) == ([], [])
    unrated = [(a, p, s, None) for a, p, s, _ in mentions]
    _, cons = aspect_points(unrated, TERMS)
    assert [c.quote for c in cons] == ["Tight fit, a terrible one."]  # the most negative
    praised = [("fit", 0.9, "Perfect fit.", 2.0), ("fit", 0.8, "Great fit.", 1.0)]
    assert aspect_points(praised, TERMS) == ([], [])  # praise quoted from 1-2 stars: no


def test_points_rank_by_count_and_keep_top():
    mentions = [(a, 0.9, f"The {a} is great.", 5.0) for a, n in
                [("fit", 1), ("sound", 3), ("battery", 2)] for _ in range(n)]
    pros, _ = aspect_points(mentions, TERMS, top=2)
    assert [p.aspect for p in pros] == ["sound", "battery"]


def test_listings_of_one_product_are_described_once_and_copied_reviews_count_once():
    docs = pd.DataFrame({
        "doc_id": ["d1", "d2", "d3", "d4"],
        "user": ["u1", "u1", "u2", "u3"],
        "item": ["A", "A-red", "A", "B"],  # d2 is u1's review copied onto the red listing
        "rating": [5.0, 5.0, 4.0, float("nan")],
        "kind": ["review"] * 4,
    })
    news = pd.DataFrame({"doc_id": ["n1"], "user": [""], "item": ["N1"], "rating": [None],
                         "kind": ["news"]})  # a news id is no item to describe
    docs = pd.concat([docs, news], ignore_index=True)
    sentences = pd.DataFrame({
        "doc_id": ["d1", "d2", "d3", "d4", "d4", "n1"],
        "text": ["The sound is great.", "The sound is great.", "Great sound.",
                 "The battery died.", "Bad battery, it died again.", "Great sound system."],
        "aspects": [["sound"], ["sound"], ["sound"], ["battery"], ["battery"], ["sound"]],
        "aspect_polarity": [[0.9], [0.9], [0.7], [-0.9], [-0.8], [0.9]],
    })
    out = describe_items(sentences, docs, {"A": "Speaker"}, {"A": ["A-red"]}, TERMS)
    assert [(d.item, d.reviews, d.listings) for d in out] == [("A", 2, ["A-red"]), ("B", 1, [])]
    speaker, other = out
    assert speaker.pros == [Point("sound", 2, 2, 0, "The sound is great.")]  # not 3 mentions
    assert speaker.summary == "Praised for sound."
    assert other.cons[0].aspect == "battery" and other.summary == "Criticised for battery."
    # Every quote is verbatim one of the item's sentences.
    for d in out:
        texts = set(sentences[sentences["doc_id"].isin(
            docs[docs["item"].isin([d.item, *d.listings])]["doc_id"])]["text"])
        assert {p.quote for p in d.pros + d.cons} <= texts


def test_summary_and_markdown_read_as_sentences():
    d = Description("X1", "Boots", 7,
                    pros=[Point("fit", 5, 4, 1, "Perfect fit."), Point("sole", 3, 3, 0, "Good.")],
                    cons=[Point("price", 4, 1, 3, "Too expensive.")])
    assert d.summary == "Praised for fit and sole; criticised for price."
    text = d.markdown()
    assert '- Pro: fit (praised in 4 of 5 mentions): "Perfect fit."' in text
    assert '- Con: price (criticised in 3 of 4 mentions): "Too expensive."' in text
    plain = Description("X2", "", 2)
    assert plain.summary == "No aspect stands out."
    assert "`X2`, 2 reviews. No aspect stands out." in plain.markdown()  # the count said once


def test_reviews_without_a_user_each_count_as_one_review():
    """A review table read with `ingest --kind review` (online_shopping: category, label, text)
    has no users: each review is its own reviewer, not one anonymous reviewer per item."""
    docs = pd.DataFrame({"doc_id": ["a", "b", "c"], "user": [None, None, None],
                         "item": ["平板", "平板", "书籍"], "rating": [None] * 3,
                         "kind": ["review"] * 3})
    sentences = pd.DataFrame({"doc_id": ["a", "b", "c"], "text": ["很好", "很好", "不错"],
                              "aspects": [[], [], []], "aspect_polarity": [[], [], []]})
    out = describe_items(sentences, docs, {}, {}, TERMS)
    assert [(d.item, d.reviews) for d in out] == [("平板", 2), ("书籍", 1)]
