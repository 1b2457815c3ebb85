"""Review question answering on SubjQA (EVAL.md protocol): exact match and token F1 on each domain's
test split, over all, answerable and unanswerable questions, for each system side by side.

Systems so far (issue 18 adds the ALBERT student and the teacher fine-tuned for extractive QA):
  - `no answer`: says "not answered" to every question, the floor set by the unanswerable share;
  - `overlap, threshold 0`: the review sentence sharing the most content words with the
    question (`review_qa.OverlapBaseline` at threshold 0: "not answered" only when no sentence
    shares a word);
  - `overlap`: the same, with "not answered" below an overlap threshold chosen on dev (EVAL.md:
    dev chooses the no-answer threshold).

    python benchmarks/review_qa.py                       # both domains
    python benchmarks/review_qa.py --domains electronics

Writes benchmarks/results/review_qa.json and review_qa.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import REPO, markdown_table, write_results  # noqa: E402
from pipelines.quality import review_qa  # noqa: E402

SHARED = REPO.parent / "shared" / "data"


def systems(dev: list[review_qa.QAExample]) -> dict:
    """Each system: (fitted predictor, the no-answer threshold or None)."""
    chosen = review_qa.OverlapBaseline().fit(dev)
    return {
        "no answer": (lambda examples: [""] * len(examples), None),
        "overlap, threshold 0": (review_qa.OverlapBaseline(threshold=0.0).predict, 0.0),
        "overlap": (chosen.predict, chosen.threshold),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=SHARED, help="the shared data folder")
    parser.add_argument("--domains", nargs="*", default=list(review_qa.DOMAINS),
                        choices=list(review_qa.DOMAINS))
    args = parser.parse_args(argv)

    results, rows = {}, []
    for domain in args.domains:
        dev = review_qa.load_split(args.data, domain, "dev")
        test = review_qa.load_split(args.data, domain, "test")
        results[domain] = {"dev": len(dev), "test": len(test),
                           "test_answerable": sum(e.answerable for e in test), "systems": {}}
        for name, (predict, threshold) in systems(dev).items():
            started = time.perf_counter()
            scores = review_qa.score(test, predict(test))
            seconds = time.perf_counter() - started
            results[domain]["systems"][name] = {**scores, "threshold": threshold,
                                                "seconds": round(seconds, 2)}
            rows.append([domain, name, "-" if threshold is None else f"{threshold:.2f}",
                         100 * scores["all"]["exact_match"], 100 * scores["all"]["f1"],
                         100 * scores["answerable"]["f1"], 100 * scores["unanswerable"]["f1"]])
    table = markdown_table(["domain", "system", "no-answer threshold", "EM", "F1",
                            "F1 answerable", "F1 unanswerable"], rows)
    print(table)
    write_results("review_qa", {"results": results}, table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
