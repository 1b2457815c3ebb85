"""Which of an item's reviews bear on a shopper's question: each review sentence is scored against
the question and a review ranks by its best sentence.

Three scorers, measured side by side on SubjQA (`benchmarks/review_qa.py --retrieval`):
  - `bm25`: Okapi BM25 over lower-cased words without function words (k1 1.2, b 0.75), the
    sentences of the item being the collection: the classic lexical baseline;
  - `embedding`: cosine between the question's and each sentence's embedding from the packaged
    teacher (all-MiniLM-L6-v2, trained on question/answer and paraphrase pairs), which matches
    "How long does it last?" to "the charge holds two days" without a shared word;
  - `hybrid`: the two rankings fused by reciprocal rank (Cormack et al. 2009, k = 60).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

METHODS = ("bm25", "embedding", "hybrid")
_WORD = re.compile(r"\w+")
RRF_K = 60


# English function words: in a collection of a few dozen sentences, "the" can look rare.
STOP_WORDS = frozenset("""
a an the and or but if of to for in on at by with from about as into than then so too very
is are was were be been being am do does did done have has had having can could would should
will shall may might must it its it's this that these those there here i me my we our you your
he she him her they them their what which who whom whose when where why how not no yes any
""".split())


def words(text: str) -> list[str]:
    """Lower-cased word tokens without function words, a plural "s" dropped ("cables" ->
    "cable"; "glass" stays)."""
    return [w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w
            for w in _WORD.findall(text.lower()) if w not in STOP_WORDS]


class BM25:
    """Okapi BM25 over a fixed collection of short texts."""

    def __init__(self, texts: Sequence[str], k1: float = 1.2, b: float = 0.75):
        self.k1, self.b = k1, b
        self.counts = [Counter(words(t)) for t in texts]
        self.lengths = np.array([sum(c.values()) for c in self.counts], float)
        self.mean_length = float(self.lengths.mean()) if len(texts) else 0.0
        frequency = Counter(w for c in self.counts for w in c)
        n = len(texts)
        self.idf = {w: math.log(1 + (n - f + 0.5) / (f + 0.5)) for w, f in frequency.items()}

    def scores(self, query: str) -> np.ndarray:
        out = np.zeros(len(self.counts))
        norm = self.k1 * (1 - self.b + self.b * self.lengths / max(self.mean_length, 1e-9))
        for word in set(words(query)):
            if word not in self.idf:
                continue
            tf = np.array([c.get(word, 0) for c in self.counts], float)
            out += self.idf[word] * tf * (self.k1 + 1) / (tf + norm)
        return out


def reciprocal_rank_fusion(*scores: np.ndarray, k: int = RRF_K) -> np.ndarray:
    """Sum over rankings of 1 / (k + rank), rank 1 the best of each."""
    fused = np.zeros(len(scores[0]))
    for s in scores:
        ranks = np.empty(len(s))
        ranks[np.argsort(-np.asarray(s), kind="stable")] = np.arange(1, len(s) + 1)
        fused += 1.0 / (k + ranks)
    return fused


Embed = Callable[[Sequence[str]], np.ndarray]  # texts -> unit vectors


def sentence_scores(question: str, sentences: Sequence[str], method: str,
                    embed: Embed | None = None,
                    sentence_vectors: np.ndarray | None = None) -> np.ndarray:
    """Each sentence's relevance to `question` by `method` (higher is closer)."""
    if method not in METHODS:
        raise ValueError(f"`method` must be one of {METHODS}. Received: {method!r}")
    if not len(sentences):
        return np.zeros(0)
    lexical = BM25(sentences).scores(question) if method != "embedding" else None
    if method == "bm25":
        return lexical
    if embed is None:
        raise ValueError(f"method {method!r} needs an embedding function")
    vectors = embed(list(sentences)) if sentence_vectors is None else sentence_vectors
    semantic = vectors @ embed([question])[0]
    return semantic if method == "embedding" else reciprocal_rank_fusion(lexical, semantic)


@dataclass
class RankedReview:
    """A review in retrieval order, with its best sentence and that sentence's score."""

    index: int
    sentence: str
    score: float
    sentence_index: int = 0  # the best sentence's position in its review


def rank_reviews(question: str, reviews: Sequence[Sequence[str]], method: str,
                 embed: Embed | None = None) -> list[RankedReview]:
    """Reviews (each a list of sentences) ranked by their best sentence, best first."""
    owner = [(i, j) for i, review in enumerate(reviews) for j in range(len(review))]
    sentences = [s for review in reviews for s in review]
    scores = sentence_scores(question, sentences, method, embed)
    best: dict[int, RankedReview] = {}
    for (review, position), sentence, score in zip(owner, sentences, scores):
        if review not in best or score > best[review].score:
            best[review] = RankedReview(review, sentence, float(score), position)
    return sorted(best.values(), key=lambda r: (-r.score, r.index))


def recall_at(ranked: Sequence[Sequence[int]], gold: Sequence[int], ks=(1, 3, 5)) -> dict:
    """Share of questions whose gold review is among the first k retrieved, for each k."""
    return {f"recall@{k}": float(np.mean([g in r[:k] for r, g in zip(ranked, gold)]))
            for k in ks}


def sentence_offsets(text: str, sentences: Sequence[str]) -> list[tuple[int, int] | None]:
    """Where each of `text`'s sentences (in order) lies in it; None for one not found."""
    spans: list[tuple[int, int] | None] = []
    position = 0
    for sentence in sentences:
        found = text.find(sentence, position)
        spans.append(None if found < 0 else (found, found + len(sentence)))
        if found >= 0:
            position = found + len(sentence)
    return spans


def passage_around(text: str, sentences: Sequence[str], index: int, radius: int = 1) -> str:
    """The stretch of `text` from sentence `index - radius` to `index + radius` (as written,
    spacing kept); the whole text when the sentences cannot be found in it."""
    spans = sentence_offsets(text, sentences)
    if not spans or None in spans:
        return text
    first, last = max(0, index - radius), min(len(spans) - 1, index + radius)
    return text[spans[first][0]:spans[last][1]]
