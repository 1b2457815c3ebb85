"""Answering from an item's reviews on SubjQA: does retrieval find the review that answers, and what
does `opinionrec ask` answer when it must find it itself?

For each answerable test question, the candidates are all SubjQA reviews of the same item (train,
dev and test splits together: 9 per electronics question on average, 28 per restaurant one).
  - Retrieval: recall@1/3/5 of the annotated review, per method (`review_retrieval`: BM25,
    the teacher's sentence embeddings, both fused), side by side.
  - With `--model` (a `review_qa` SavedModel): `ask`'s answer (`ask.answer_question` over the
    `--passages` best reviews) scored against the annotated answer (SQuAD EM / F1), beside the
    same model reading only the annotated review (the oracle passage).

    python benchmarks/review_retrieval.py
    python benchmarks/review_retrieval.py --model WS/train_qa/review_qa --radii review 0 1

Writes benchmarks/results/review_retrieval.json and .md.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import REPO, markdown_table, write_results  # noqa: E402
from pipelines import review_retrieval  # noqa: E402
from pipelines.quality import review_qa  # noqa: E402
from pipelines.records import split_sentences  # noqa: E402

SHARED = REPO.parent / "shared" / "data"


class CachedEmbed:
    """The teacher's embeddings, each distinct text embedded once."""

    def __init__(self):
        from albert_tf.distillation import TeacherEncoder

        self.encoder, self.cache = TeacherEncoder(), {}

    def __call__(self, texts):
        missing = sorted({t for t in texts if t not in self.cache})
        if missing:
            self.cache.update(zip(missing, self.encoder.embed(missing)))
        return np.stack([self.cache[t] for t in texts])


def item_pools(data: Path, domain: str) -> dict[str, dict[str, str]]:
    """item -> review id -> review text, over all splits."""
    pools: dict[str, dict[str, str]] = defaultdict(dict)
    for split in ("train", "dev", "test"):
        for e in review_qa.load_split(data, domain, split):
            pools[e.item][e.review_id] = e.context
    return pools


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=SHARED)
    parser.add_argument("--domains", nargs="*", default=list(review_qa.DOMAINS),
                        choices=list(review_qa.DOMAINS))
    parser.add_argument("--methods", nargs="*", default=list(review_retrieval.METHODS),
                        choices=list(review_retrieval.METHODS))
    parser.add_argument("--model", type=Path, default=None,
                        help="a review_qa SavedModel: also score `ask`'s answers")
    parser.add_argument("--ask-methods", nargs="*", default=["hybrid"],
                        choices=list(review_retrieval.METHODS),
                        help="retrieval methods `ask` is scored with (default: %(default)s)")
    parser.add_argument("--passages", type=int, default=5)
    parser.add_argument("--radii", nargs="*", default=["review"],
                        help="what `ask` reads of each retrieved review: `review` (whole) or "
                        "N (its best sentence and N each side); several are compared")
    args = parser.parse_args(argv)
    import pandas as pd

    embed = CachedEmbed() if (set(args.methods) | set(args.ask_methods)) - {"bm25"} else None
    qa = None
    if args.model:
        from pipelines.ask import LocalQA

        qa = LocalQA(args.model)
    results, rows = {}, []
    for domain in args.domains:
        pools = item_pools(args.data, domain)
        test = [e for e in review_qa.load_split(args.data, domain, "test") if e.answerable]
        if embed is not None:
            embed([s for pool in pools.values() for t in pool.values()
                   for s in split_sentences(t)])
        entry = {"questions": len(test),
                 "mean_candidates": float(np.mean([len(pools[e.item]) for e in test])),
                 "retrieval": {}, "ask": {}}
        for method in args.methods:
            started = time.perf_counter()
            ranked, gold = [], []
            for e in test:
                ids = list(pools[e.item])
                reviews = [split_sentences(pools[e.item][i]) for i in ids]
                order = review_retrieval.rank_reviews(e.question, reviews, method, embed)
                ranked.append([r.index for r in order])
                gold.append(ids.index(e.review_id))
            scores = review_retrieval.recall_at(ranked, gold)
            entry["retrieval"][method] = {**scores,
                                          "seconds": round(time.perf_counter() - started, 2)}
            rows.append([domain, f"retrieval: {method}", *(f"{100 * scores[k]:.1f}" for k in
                                                             ("recall@1", "recall@3", "recall@5")),
                         "-", "-"])
            print(domain, method, scores, flush=True)
        if qa is not None:
            from pipelines.ask import answer_question

            oracle = qa([e.question for e in test], [e.context for e in test])
            oracle_scores = review_qa.score(test, [a if ok else "" for a, ok in
                                                   zip(oracle["answer"], oracle["answered"])])
            entry["ask"]["oracle passage"] = oracle_scores["all"]
            for method in args.ask_methods:
                for radius in args.radii:
                    predictions = []
                    for e in test:
                        ids = list(pools[e.item])
                        frame = pd.DataFrame({"id": ids, "rating": [None] * len(ids),
                                              "text": [pools[e.item][i] for i in ids],
                                              "sentences": [None] * len(ids)})
                        reply = answer_question(e.question, e.item, frame, qa, method,
                                                args.passages, embed,
                                                None if radius == "review" else int(radius))
                        predictions.append(reply.answer)
                    name = method if radius == "review" else f"{method}, sentence +-{radius}"
                    entry["ask"][name] = review_qa.score(test, predictions)["all"]
            for name, s in entry["ask"].items():
                rows.append([domain, f"ask: {name}", "-", "-", "-",
                             f"{100 * s['exact_match']:.1f}", f"{100 * s['f1']:.1f}"])
                print(domain, "ask", name, s, flush=True)
        results[domain] = entry
    table = markdown_table(["domain", "system", "recall@1", "recall@3", "recall@5",
                            "EM (answerable)", "F1 (answerable)"], rows)
    print(table)
    write_results("review_retrieval", {"results": results, "passages": args.passages,
                                       "model": str(args.model) if args.model else None}, table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
