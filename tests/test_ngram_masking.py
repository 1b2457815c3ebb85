"""ALBERT's n-gram masking: spans of up to 3 tokens, p(n) ~ 1/n, at the asked rate."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from albert_tf.pretraining import (
    NgramMaskGenerator,
    make_mask_generator,
    ngram_probabilities,
    span_start_rate,
)

CLS, SEP, MASK, SPECIAL = 2, 3, 4, [0, 1, 2, 3, 4]
VOCABULARY = 1000


def pairs(rows: int = 128, seed: int = 0) -> tf.RaggedTensor:
    """`[CLS] A [SEP] B [SEP]` rows of random ordinary tokens and random lengths."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(rows):
        a, b = rng.integers(5, 60, 2)
        out.append([CLS, *rng.integers(5, VOCABULARY, a), SEP, *rng.integers(5, VOCABULARY, b),
                    SEP])
    return tf.ragged.constant(out, dtype=tf.int32)


def chosen_masks(masker, tokens: tf.RaggedTensor) -> tuple[list[np.ndarray], dict]:
    out = masker(tokens)
    weights = out["mask_weights"].numpy()
    positions = [p[w > 0] for p, w in zip(out["mask_positions"].numpy(), weights, strict=True)]
    return positions, out


def mean_run_length(positions: list[np.ndarray]) -> float:
    """Mean length of the runs of consecutive chosen positions."""
    runs = [len(run) for p in positions if len(p)
            for run in np.split(p, np.flatnonzero(np.diff(p) != 1) + 1)]
    return float(np.mean(runs))


def test_span_lengths_follow_one_over_n_and_the_start_rate_hits_the_mask_rate():
    np.testing.assert_allclose(ngram_probabilities(3), [6 / 11, 3 / 11, 2 / 11])
    assert span_start_rate(0.15, 1) == pytest.approx(0.15)
    # Simulated independently of the closed form: spans of 1/2/3 tokens with p ~ 1/n, started
    # at the solved rate on a long row, overlapping freely, cover 30% of it.
    rng = np.random.default_rng(0)
    width = 1_000_000
    starts = np.flatnonzero(rng.random(width) < span_start_rate(0.3, 3))
    lengths = rng.choice([1, 2, 3], size=len(starts), p=[6 / 11, 3 / 11, 2 / 11])
    covered = np.zeros(width + 3, bool)
    for k in range(3):
        covered[starts[lengths > k] + k] = True
    assert covered[:width].mean() == pytest.approx(0.3, abs=0.003)
    with pytest.raises(ValueError, match="mask_selection_rate"):
        NgramMaskGenerator(VOCABULARY, 1.0, MASK, 128)
    assert isinstance(make_mask_generator(VOCABULARY, MASK, SPECIAL, 128, 0.3, max_ngram=3),
                      NgramMaskGenerator)


def test_ngram_masking_masks_spans_of_ordinary_tokens_at_the_rate():
    tf.random.set_seed(1)
    tokens = pairs()
    masker = NgramMaskGenerator(VOCABULARY, 0.3, MASK, mask_selection_length=128,
                                unselectable_token_ids=SPECIAL, max_ngram=3)
    positions, out = chosen_masks(masker, tokens)
    masked = out["token_ids"].to_list()
    originals = tokens.to_list()
    mask_ids = out["mask_ids"].numpy()
    replaced_by_mask = covered = ordinary = 0
    for row, (original, chosen) in enumerate(zip(originals, positions, strict=True)):
        original, result = np.asarray(original), np.asarray(masked[row])
        assert len(result) == len(original)
        assert not np.isin(original[chosen], SPECIAL).any()  # no [CLS], [SEP] or padding
        np.testing.assert_array_equal(mask_ids[row][: len(chosen)], original[chosen])
        untouched = np.setdiff1d(np.arange(len(original)), chosen)
        np.testing.assert_array_equal(result[untouched], original[untouched])
        replaced_by_mask += int((result[chosen] == MASK).sum())
        covered += len(chosen)
        ordinary += int((~np.isin(original, SPECIAL)).sum())
    assert 0.27 < covered / ordinary < 0.33
    assert 0.75 < replaced_by_mask / covered < 0.85
    # Spans: runs of masked tokens are longer than single-token masking's at the same rate.
    single = make_mask_generator(VOCABULARY, MASK, SPECIAL, 128, 0.3)
    single_positions, _ = chosen_masks(single, tokens)
    assert mean_run_length(positions) > mean_run_length(single_positions) + 0.3


def test_ngram_masking_keeps_to_the_selection_length_and_pads_the_rest():
    tf.random.set_seed(2)
    tokens = pairs(rows=32)
    masker = NgramMaskGenerator(VOCABULARY, 0.3, MASK, mask_selection_length=4,
                                unselectable_token_ids=SPECIAL, max_ngram=3)
    out = masker(tokens)
    assert out["mask_positions"].shape == out["mask_ids"].shape == \
        out["mask_weights"].shape == (32, 4)
    changed = [np.flatnonzero(np.asarray(m) != np.asarray(o))
               for m, o in zip(out["token_ids"].to_list(), tokens.to_list(), strict=True)]
    for row, weights in enumerate(out["mask_weights"].numpy()):
        chosen = out["mask_positions"].numpy()[row][weights > 0]
        assert weights.sum() <= 4
        assert set(changed[row]) <= set(chosen)  # nothing past the cap was replaced
        assert (out["mask_positions"].numpy()[row][weights == 0] == 0).all()


def test_pretraining_batches_mask_spans_in_training_and_single_tokens_held_out():
    from albert_tf.instances import Instances, pretraining_batches

    tf.random.set_seed(3)
    tokens = pairs(rows=96)
    segments = tf.ragged.map_flat_values(tf.zeros_like, tokens)
    n = int(tokens.nrows())
    instances = Instances(tokens, segments, np.full([n], -1, np.int32),  # single segments
                          np.array([b"d%d" % i for i in range(n)]), np.zeros([n], np.int64))
    schema = {"vocabulary_size": VOCABULARY, "sequence_length": 128,
              "special_token_ids": {"pad": 0, "unk": 1, "cls": CLS, "sep": SEP, "mask": MASK}}
    batches = pretraining_batches(instances, instances, schema, "bucketed", batch_size=8,
                                  mask_rate=0.3, max_ngram=3)

    def positions(dataset) -> list[np.ndarray]:
        return [p[w > 0] for x, _, weights in dataset
                for p, w in zip(x["mask_positions"].numpy(), weights["mlm"].numpy(),
                                strict=True)]

    assert mean_run_length(positions(batches.train(0, 12))) > 1.8
    assert mean_run_length(positions(batches.held_out)) < 1.4  # 15%, one token at a time
