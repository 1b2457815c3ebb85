"""Metrics of the quality harness, in numpy only (no scikit-learn at run time).

All values are fractions in [0, 1]. `macro_f1` averages over the classes present in y_true or
y_pred, as scikit-learn's `f1_score(average="macro")` does by default. Spans are scored as
micro-averaged exact matches of per-sentence span sets (SemEval-2014's aspect-term measure): a
predicted span that only overlaps a gold one is a false positive and leaves the gold one missed.

Out-of-scope detection (CLINC150): an utterance is called "oos" when the classifier's largest
softmax probability is below a threshold chosen on dev (`choose_oos_threshold`).
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np

OOS = "oos"
Span = tuple[int, int]


def _arrays(y_true: Sequence, y_pred: Sequence) -> tuple[np.ndarray, np.ndarray]:
    true, pred = np.asarray(y_true, dtype=object), np.asarray(y_pred, dtype=object)
    if true.shape != pred.shape:
        raise ValueError(f"y_true and y_pred differ in length. Received: {len(true)} and "
                         f"{len(pred)}")
    return true, pred


def _ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, 0.0 when the denominator is 0 (scikit-learn's zero_division)."""
    return float(numerator) / denominator if denominator else 0.0


def accuracy(y_true: Sequence, y_pred: Sequence) -> float:
    """Fraction of predictions equal to the truth (0.0 for no examples)."""
    true, pred = _arrays(y_true, y_pred)
    return _ratio(np.sum(true == pred), len(true))


def f1(tp: float, fp: float, fn: float) -> float:
    """F1 from counts: 2tp / (2tp + fp + fn), 0.0 when there is nothing to count."""
    return _ratio(2 * tp, 2 * tp + fp + fn)


def per_class_f1(y_true: Sequence, y_pred: Sequence) -> dict[str, float]:
    """F1 of every class present in y_true or y_pred."""
    true, pred = _arrays(y_true, y_pred)
    scores = {}
    for label in sorted(set(true.tolist()) | set(pred.tolist()), key=str):
        tp = np.sum((true == label) & (pred == label))
        scores[label] = f1(tp, np.sum((true != label) & (pred == label)),
                           np.sum((true == label) & (pred != label)))
    return scores


def macro_f1(y_true: Sequence, y_pred: Sequence) -> float:
    """Unweighted mean of the per-class F1 over the classes in y_true ∪ y_pred."""
    scores = per_class_f1(y_true, y_pred)
    return float(np.mean(list(scores.values()))) if scores else 0.0


def span_prf(
    gold: Sequence[Sequence[Span]], pred: Sequence[Sequence[Span]]
) -> dict[str, float]:
    """Micro precision, recall and F1 of exact (start, end) matches, per-sentence span sets."""
    if len(gold) != len(pred):
        raise ValueError(f"gold and pred differ in sentences. Received: {len(gold)} and "
                         f"{len(pred)}")
    tp = n_gold = n_pred = 0
    for gold_spans, pred_spans in zip(gold, pred):
        gold_set = {tuple(s) for s in gold_spans}
        pred_set = {tuple(s) for s in pred_spans}
        tp += len(gold_set & pred_set)
        n_gold += len(gold_set)
        n_pred += len(pred_set)
    return {"precision": _ratio(tp, n_pred), "recall": _ratio(tp, n_gold),
            "f1": f1(tp, n_pred - tp, n_gold - tp)}


def oos_recall(y_true: Sequence, y_pred: Sequence, oos: str = OOS) -> float:
    """Fraction of the out-of-scope examples predicted out of scope."""
    true, pred = _arrays(y_true, y_pred)
    is_oos = true == oos
    return _ratio(np.sum(pred[is_oos] == oos), np.sum(is_oos))


def in_scope_accuracy(y_true: Sequence, y_pred: Sequence, oos: str = OOS) -> float:
    """Accuracy over the in-scope examples (an in-scope example predicted "oos" is wrong)."""
    true, pred = _arrays(y_true, y_pred)
    in_scope = true != oos
    return _ratio(np.sum(pred[in_scope] == true[in_scope]), np.sum(in_scope))


def choose_oos_threshold(
    dev_max_prob: Sequence[float], dev_is_oos: Sequence[bool], dev_correct: Sequence[bool]
) -> float:
    """The threshold on the largest softmax probability that maximises, on dev,
    in-scope accuracy + out-of-scope recall (an example is called "oos" when its probability is
    below the threshold; `dev_correct` says whether the in-scope example's argmax is right).

    Candidates are 0 (never "oos"), each dev probability and one just above the largest (always
    "oos"); of equally good ones the smallest wins. The sum weighs both parts equally whatever
    their sizes (CLINC150's dev has 3,000 in-scope and 100 out-of-scope examples).
    """
    prob = np.asarray(dev_max_prob, dtype=float)
    is_oos = np.asarray(dev_is_oos, dtype=bool)
    correct = np.asarray(dev_correct, dtype=bool) & ~is_oos
    if not prob.size:
        raise ValueError("choose_oos_threshold needs dev examples. Received none.")
    candidates = np.unique(np.concatenate([[0.0], prob, [np.nextafter(prob.max(), np.inf)]]))
    order = np.sort(prob[correct])  # kept in scope when prob >= t
    oos_order = np.sort(prob[is_oos])  # caught when prob < t
    kept_correct = len(order) - np.searchsorted(order, candidates, side="left")
    caught = np.searchsorted(oos_order, candidates, side="left")
    score = (kept_correct / max(np.sum(~is_oos), 1)) + (caught / max(np.sum(is_oos), 1))
    return float(candidates[int(np.argmax(score))])


def apply_threshold(
    probs: np.ndarray, labels: Sequence[str], threshold: float, oos: str = OOS
) -> list[str]:
    """The argmax class name of each row of `probs`, or `oos` where its maximum is below
    `threshold`."""
    probs = np.asarray(probs, dtype=float)
    if probs.ndim != 2 or probs.shape[1] != len(labels):
        raise ValueError(f"`probs` must be (examples, {len(labels)}). Received: {probs.shape}")
    best = probs.argmax(axis=1)
    below = probs.max(axis=1) < threshold
    return [oos if low else labels[i] for i, low in zip(best, below)]


LABEL_METRICS: Mapping[str, Callable[[Sequence, Sequence], float]] = {
    "accuracy": accuracy,
    "macro_f1": macro_f1,
    "in_scope_accuracy": in_scope_accuracy,
    "oos_recall": oos_recall,
}


def score_labels(names: Sequence[str], y_true: Sequence, y_pred: Sequence) -> dict[str, float]:
    """The label metrics `names` (keys of LABEL_METRICS) of one set of predictions."""
    unknown = [n for n in names if n not in LABEL_METRICS]
    if unknown:
        raise ValueError(f"Unknown metric(s) {unknown}. Known: {list(LABEL_METRICS)}")
    return {name: LABEL_METRICS[name](y_true, y_pred) for name in names}
