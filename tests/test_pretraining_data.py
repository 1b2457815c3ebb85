"""SOP pairs and the resumable data order."""

import numpy as np

from albert_tf.pretraining import NO_SOP_LABEL, build_sop_pairs, example_order


def test_sop_pairs_keep_order_or_swap_and_lose_no_text():
    docs = [["A one.", "A two.", "A three."], ["B one.", "B two."], ["Only one."]]
    pairs = build_sop_pairs(docs, max_chars=1000, seed=1)
    assert len(pairs) == 3
    for first, second, label in zip(pairs.first, pairs.second, pairs.label):
        if label == NO_SOP_LABEL:
            assert (first, second) == ("Only one.", "")
            continue
        a, b = (second, first) if label == 1 else (first, second)
        joined = f"{a} {b}"
        assert joined in {"A one. A two. A three.", "B one. B two."}


def test_swap_rate_is_about_half():
    docs = [[f"s{i}a.", f"s{i}b."] for i in range(2000)]
    labels = build_sop_pairs(docs, seed=3).label
    assert 0.45 < labels.mean() < 0.55


def test_long_documents_are_chunked():
    docs = [[f"Sentence number {i} of a long document." for i in range(40)]]
    pairs = build_sop_pairs(docs, max_chars=120)
    assert len(pairs) > 5
    assert all(len(a) + len(b) <= 120 + 45 for a, b in zip(pairs.first, pairs.second))


def test_example_order_is_a_pure_function_of_position():
    whole = example_order(10, seed=7, start=0, count=35)
    # Every epoch is a permutation.
    for epoch in range(3):
        assert sorted(whole[epoch * 10 : epoch * 10 + 10]) == list(range(10))
    # Resuming at any position continues the same stream.
    np.testing.assert_array_equal(example_order(10, seed=7, start=13, count=22), whole[13:])
    assert not np.array_equal(example_order(10, seed=8, start=0, count=10), whole[:10])
