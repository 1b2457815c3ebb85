"""SubjQA review QA: the reader, SQuAD 2.0's metrics and the word-overlap baseline."""

from __future__ import annotations

import pytest

from pipelines.quality import review_qa as qa


def example(question: str, context: str, answer: str = "") -> qa.QAExample:
    start = context.find(answer) if answer else -1
    return qa.QAExample("q", "item", "r", question, context, answer, start)


@pytest.mark.parametrize("prediction, gold, em, f1", [
    ("The battery lasts!", "battery lasts", 1.0, 1.0),  # case, punctuation, articles
    ("battery lasts all day", "battery lasts", 0.0, 2 * 0.5 * 1.0 / 1.5),
    ("", "", 1.0, 1.0),  # no answer to an unanswerable question
    ("battery", "", 0.0, 0.0),  # an answer to an unanswerable question
    ("", "battery", 0.0, 0.0),
    ("sound", "battery", 0.0, 0.0),
])
def test_squad_metrics(prediction, gold, em, f1):
    assert qa.exact_match(prediction, gold) == em
    assert qa.token_f1(prediction, gold) == pytest.approx(f1)


def test_scores_split_answerable_and_unanswerable():
    examples = [example("How is the bass?", "The bass is deep.", "bass is deep"),
                example("How is the screen?", "The bass is deep.")]
    scores = qa.score(examples, ["bass is deep", "The bass is deep."])
    assert scores["answerable"] == {"exact_match": 1.0, "f1": 1.0, "n": 1}
    assert scores["unanswerable"] == {"exact_match": 0.0, "f1": 0.0, "n": 1}
    assert scores["all"]["f1"] == 0.5
    with pytest.raises(ValueError, match="differ in length"):
        qa.score(examples, [""])


def test_overlap_baseline_answers_with_the_sentence_that_shares_the_question_words():
    context = "Shipping was quick. The bass sounds deep and warm! Screens scratch easily."
    sentence, share = qa.best_overlap_sentence("How is the bass?", context)
    assert (sentence, share) == ("The bass sounds deep and warm!", 1.0)
    assert qa.best_overlap_sentence("How are the screens?", context)[0] == \
        "Screens scratch easily."  # plural folded
    assert qa.best_overlap_sentence("How is the battery?", context) == ("", 0.0)


def test_the_no_answer_threshold_is_chosen_on_dev():
    answered = [example(f"How is the {w}?", f"The {w} is great. Nothing else.",
                        f"The {w} is great.")
                for w in ("bass", "screen", "case")]
    unanswered = [example("How is the price of shipping?", "The price was a shock. It broke.")]
    baseline = qa.OverlapBaseline().fit(answered + unanswered)
    assert 0.5 < baseline.threshold <= 1.0  # half the words of the last question: not enough
    assert baseline.predict(answered + unanswered) == [e.answer for e in answered] + [""]


def test_real_subjqa_rows_read_with_their_answers_inside_the_review():
    from tests.conftest import shared_file

    shared_file("subjqa-review-qa")
    test = qa.load_split(shared_file(""), "electronics", "test")
    assert len(test) == 718 and sum(e.answerable for e in test) == 335  # SOURCE.md's counts
    assert not any(e.context.endswith(qa.NO_ANSWER) for e in test)
    located = [e for e in test if e.answer_start >= 0]
    assert len(located) >= 330
    assert all(e.context[e.answer_start:e.answer_start + len(e.answer)] == e.answer
               for e in located)


def test_the_models_no_answer_threshold_is_the_best_on_dev():
    examples = [example("How is the bass?", "The bass is deep.", "deep"),
                example("How is the screen?", "The bass is deep."),
                example("How is the case?", "The case is thin.", "thin")]
    texts, margins = ["deep", "deep", "thin"], [3.0, 1.0, 0.5]
    threshold = qa.choose_no_answer_threshold(examples, texts, margins)
    # Answering everything (below 0.5) keeps the wrong "deep", answering above 1.0 drops the
    # right "thin": a tie at 2 of 3, broken towards the threshold nearest 0.
    assert threshold == -0.5
    assert qa.choose_no_answer_threshold(examples[:2], texts[:2], margins[:2]) == 1.0
