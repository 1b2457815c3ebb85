"""Review question answering on SubjQA: the data, SQuAD 2.0's metrics and the word-overlap baseline.

A SubjQA row is a shopper's question about an item, one review of it (the context) and the answer:
a span of the review given by character offsets, or `ANSWERNOTFOUND` when the review does not
answer. The context ends with the marker " ANSWERNOTFOUND" (where annotators clicked for no
answer); it is cut off here, so a system answers with a span or with nothing.

The gold answer is the review's own text at the offsets: the CSV's `human_ans_spans` is the same
text re-tokenised ("anti - glare" for "anti-glare") in about a fifth of the rows.

Metrics follow SQuAD 2.0 (EVAL.md): answers are lower-cased, punctuation and the articles a/an/the
removed and whitespace collapsed; exact match is equality, F1 the harmonic mean of token precision
and recall. An unanswerable question scores 1 when the prediction is empty, else 0. Reported over
all questions and separately over the answerable and unanswerable ones.

The baseline answers with the review sentence that shares the most content words with the
question, or with nothing when that overlap is below a threshold chosen on dev.
"""

from __future__ import annotations

import ast
import csv
import re
import string
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

NO_ANSWER = "ANSWERNOTFOUND"
DOMAINS = ("electronics", "restaurants")


@dataclass(frozen=True)
class QAExample:
    """One question about one review; `answer_start` is -1 and `answer` "" when unanswerable."""

    qid: str
    item: str
    review_id: str
    question: str
    context: str
    answer: str
    answer_start: int  # -1: unanswerable, or an answer whose offsets do not fit the review

    @property
    def answerable(self) -> bool:
        return bool(self.answer)


def read_subjqa(path: Path) -> list[QAExample]:
    """The rows of one SubjQA split file as `QAExample`s (see module doc for the gold answer)."""
    examples = []
    with open(path, encoding="utf-8", newline="") as handle:
        for index, row in enumerate(csv.DictReader(handle)):
            review = row["review"]
            context = review[: -len(NO_ANSWER)].rstrip() if review.endswith(NO_ANSWER) else review
            start, end = ast.literal_eval(row["human_ans_indices"])
            answer, answer_start = "", -1
            if row["human_ans_spans"] != NO_ANSWER:
                if 0 <= start < end <= len(context):
                    answer, answer_start = context[start:end], start
                else:  # offsets past the review (a few rows): the annotated text stands
                    answer = row["human_ans_spans"]
            examples.append(QAExample(
                qid=f"{path.parent.name}/{path.stem}/{index}", item=row["item_id"],
                review_id=row["review_id"], question=row["question"].strip(), context=context,
                answer=answer, answer_start=answer_start,
            ))
    return examples


def load_split(data_dir: Path, domain: str, split: str) -> list[QAExample]:
    """`domain` ("electronics" or "restaurants") and `split` ("train", "dev", "test")."""
    return read_subjqa(Path(data_dir) / "subjqa-review-qa" / domain / f"{split}.csv")


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lower case, no punctuation, no articles, single spaces."""
    return " ".join(_ARTICLES.sub(" ", text.lower().translate(_PUNCTUATION)).split())


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def token_f1(prediction: str, gold: str) -> float:
    """Token F1 of two answers; two empty answers agree (an unanswerable question)."""
    pred_tokens, gold_tokens = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not pred_tokens or not gold_tokens:
        return float(pred_tokens == gold_tokens)
    common = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if not common:
        return 0.0
    precision, recall = common / len(pred_tokens), common / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def score(examples: Sequence[QAExample], predictions: Sequence[str]) -> dict[str, dict]:
    """Exact match and F1 (in [0, 1]) over all, answerable and unanswerable questions, with n."""
    if len(examples) != len(predictions):
        raise ValueError(f"examples and predictions differ in length. Received: "
                         f"{len(examples)} and {len(predictions)}")
    groups: dict[str, list[tuple[float, float]]] = {"all": [], "answerable": [],
                                                    "unanswerable": []}
    for example, prediction in zip(examples, predictions):
        pair = (exact_match(prediction, example.answer), token_f1(prediction, example.answer))
        groups["all"].append(pair)
        groups["answerable" if example.answerable else "unanswerable"].append(pair)
    return {name: {"exact_match": sum(p[0] for p in pairs) / len(pairs) if pairs else 0.0,
                   "f1": sum(p[1] for p in pairs) / len(pairs) if pairs else 0.0,
                   "n": len(pairs)}
            for name, pairs in groups.items()}


# Question words and fillers that say nothing about what is asked ("How is the bass?" -> bass).
_QUESTION_WORDS = frozenset("""
how what which who whom whose when where why is are was were be been do does did can could would
should will the a an of to for in on at with about this that these those it its there their they
i my me you your we our us much many very good bad well like think feel feels look looks get
""".split())
_WORD = re.compile(r"[a-z0-9]+")
_SENTENCE = re.compile(r"[^.!?\n]+[.!?]*")


def content_words(text: str) -> set[str]:
    """Lower-cased words of `text` that are no question or filler words, crudely singular."""
    words = set()
    for word in _WORD.findall(text.lower()):
        if word in _QUESTION_WORDS or len(word) < 2:
            continue
        words.add(word[:-1] if len(word) > 3 and word.endswith("s") else word)
    return words


def sentence_spans(context: str) -> list[tuple[int, int]]:
    """(start, end) character offsets of the context's sentences, surrounding spaces trimmed."""
    spans = []
    for match in _SENTENCE.finditer(context):
        start, end = match.start(), match.end()
        while start < end and context[start].isspace():
            start += 1
        while end > start and context[end - 1].isspace():
            end -= 1
        if end > start:
            spans.append((start, end))
    return spans


def best_overlap_sentence(question: str, context: str) -> tuple[str, float]:
    """The context sentence sharing the largest share of the question's content words, and that
    share (0 when the question has none or no sentence shares any)."""
    wanted = content_words(question)
    best, best_score = "", 0.0
    for start, end in sentence_spans(context):
        sentence = context[start:end]
        shared = len(wanted & content_words(sentence)) / len(wanted) if wanted else 0.0
        if shared > best_score:
            best, best_score = sentence, shared
    return best, best_score


class OverlapBaseline:
    """Answer with the best-overlapping sentence, or nothing below `threshold` (set by `fit`)."""

    def __init__(self, threshold: float = 0.5):
        self.threshold = threshold

    def candidates(self, examples: Iterable[QAExample]) -> list[tuple[str, float]]:
        return [best_overlap_sentence(e.question, e.context) for e in examples]

    def fit(self, dev: Sequence[QAExample]) -> "OverlapBaseline":
        """Choose the threshold with the best F1 over all dev questions (ties: the lowest)."""
        scored = self.candidates(dev)
        thresholds = sorted({s for _, s in scored} | {0.0, 1.01})
        best = max(thresholds, key=lambda t: (score(dev, self._answers(scored, t))["all"]["f1"],
                                              -t))
        self.threshold = best
        return self

    def predict(self, examples: Sequence[QAExample]) -> list[str]:
        return self._answers(self.candidates(examples), self.threshold)

    @staticmethod
    def _answers(scored: Sequence[tuple[str, float]], threshold: float) -> list[str]:
        return [sentence if overlap >= threshold and overlap > 0 else ""
                for sentence, overlap in scored]


def choose_no_answer_threshold(examples: Sequence[QAExample], texts: Sequence[str],
                               margins: Sequence[float]) -> float:
    """The margin threshold (answer when margin > threshold) with the best F1 over all of
    `examples` (dev), for a model's best span `texts` and their margins over "no answer"."""
    candidates = sorted({float(m) for m in margins if m == m and abs(m) != float("inf")})
    thresholds = [candidates[0] - 1.0] + candidates if candidates else [0.0]

    def f1_at(threshold: float) -> float:
        answers = [t if m > threshold else "" for t, m in zip(texts, margins)]
        return score(examples, answers)["all"]["f1"]

    return max(thresholds, key=lambda t: (f1_at(t), -abs(t)))


def baseline_systems(dev: Sequence[QAExample]) -> dict:
    """The baselines every QA figure stands beside, name -> (predict, threshold): never
    answering, the overlap sentence at threshold 0, and at the threshold chosen on `dev`."""
    chosen = OverlapBaseline().fit(dev)
    return {
        "no answer": (lambda examples: [""] * len(examples), None),
        "overlap, threshold 0": (OverlapBaseline(threshold=0.0).predict, 0.0),
        "overlap": (chosen.predict, chosen.threshold),
    }
