"""pipelines.quality.metrics against scikit-learn and hand-made cases, and the baselines."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, recall_score

from pipelines.quality import baselines
from pipelines.quality import metrics as qm
from pipelines.quality.datasets import Dataset, Example, load_dataset
from tests.conftest import SHARED_DATA, shared_file


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_label_metrics_agree_with_sklearn(seed):
    rng = np.random.default_rng(seed)
    classes = np.array(["oos", "a", "b", "c", "d"])
    y_true = classes[rng.integers(0, 4, 200)].tolist()  # "d" only ever predicted
    y_pred = classes[rng.integers(0, 5, 200)].tolist()
    assert qm.accuracy(y_true, y_pred) == pytest.approx(accuracy_score(y_true, y_pred))
    assert qm.macro_f1(y_true, y_pred) == pytest.approx(
        f1_score(y_true, y_pred, average="macro", zero_division=0))
    is_oos_true = [y == "oos" for y in y_true]
    is_oos_pred = [y == "oos" for y in y_pred]
    assert qm.oos_recall(y_true, y_pred) == pytest.approx(recall_score(is_oos_true, is_oos_pred))
    in_scope = [i for i, y in enumerate(y_true) if y != "oos"]
    assert qm.in_scope_accuracy(y_true, y_pred) == pytest.approx(
        accuracy_score([y_true[i] for i in in_scope], [y_pred[i] for i in in_scope]))


def test_macro_f1_counts_predicted_only_classes():
    # sklearn: classes {x, y, z}; F1 x = 2/3, y = 0, z = 0 -> 2/9
    assert qm.macro_f1(["x", "x", "y"], ["x", "z", "z"]) == pytest.approx(2 / 9)
    assert qm.accuracy([], []) == 0.0
    with pytest.raises(ValueError, match="differ in length"):
        qm.accuracy(["a"], [])


def test_span_prf_hand_made():
    gold = [[(0, 5), (10, 15)], [], [(3, 7)]]
    pred = [[(0, 5), (10, 14)], [(1, 2)], [(3, 7), (3, 7)]]  # (10, 14) overlaps: wrong
    scores = qm.span_prf(gold, pred)
    # tp 2 (0-5, 3-7); predicted 4 distinct spans; gold 3
    assert scores == pytest.approx({"precision": 2 / 4, "recall": 2 / 3, "f1": 4 / 7})
    assert qm.span_prf([[]], [[]]) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}


def test_oos_threshold_and_apply():
    # in-scope: probs 0.9 (correct), 0.8 (correct), 0.5 (wrong); oos: 0.4, 0.6
    threshold = qm.choose_oos_threshold([0.9, 0.8, 0.5, 0.4, 0.6],
                                        [False, False, False, True, True],
                                        [True, True, False, False, False])
    # t = 0.8 keeps both correct ones (2/3) and catches both oos (1): the best sum, smallest t
    assert threshold == pytest.approx(0.8)
    probs = np.array([[0.7, 0.3], [0.2, 0.8], [0.55, 0.45]])
    assert qm.apply_threshold(probs, ["a", "b"], 0.6) == ["a", "b", "oos"]
    assert qm.apply_threshold(probs, ["a", "b"], 0.0) == ["a", "b", "a"]


def _aspect_set(train: list[tuple[str, list[str]]], test: list[tuple[str, list[str]]]) -> Dataset:
    def example(text: str, terms: list[str]) -> Example:
        spans = tuple(sorted((text.index(t), text.index(t) + len(t)) for t in terms))
        return Example(text, spans=spans)

    return Dataset("tiny", "aspect_terms", "en", [], [example(*r) for r in train], [],
                   [example(*r) for r in test], ("precision", "recall", "f1"), "hand-made")


def test_lexicon_baseline_on_a_tiny_set():
    data = _aspect_set(
        train=[("The battery life is great", ["battery life"]), ("Nice screen", ["screen"]),
               ("The battery died", ["battery"])],
        test=[("Battery life and the Screen, wow", ["Battery life", "Screen"]),  # 2 found
              ("screens are fine but the keyboard is bad", ["keyboard"]),  # no 'screen' in word
              ("my battery", [])])  # battery is a false positive
    predicted = baselines.lexicon_aspects(data)
    assert predicted == [((0, 12), (21, 27)), (), ((3, 10),)]
    scores = qm.span_prf([e.spans for e in data.test], predicted)
    assert scores == pytest.approx({"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3})
    assert baselines.run_baseline("tiny", data) == pytest.approx(scores)


def test_tfidf_baseline_beats_chance_on_a_small_real_subset():
    shared_file("ag-news-test/test.csv")
    data = load_dataset("ag_news", SHARED_DATA, max_train=300)
    result = baselines.tfidf_lr(data, c_grid=(1.0, 16.0))
    assert result.c in (1.0, 16.0) and result.test_probs.shape == (760, 4)
    accuracy = qm.accuracy([e.label for e in data.test], result.test_pred)
    assert accuracy > 0.6  # chance is 0.25


def test_target_context_marks_sides():
    example = Example("the food was great but service slow", "positive", "food", ((4, 8),))
    assert baselines.target_context(example, window=2) == "L_the R_was R_great"
