"""General distillation with fixed-width batches against length-grouped, trimmed ones.

`opinionrec distill` cuts the corpus into chunks of whole sentences up to `--sequence-length`
tokens, but most chunks (a review sentence, a headline, a query) are far shorter, and a
fixed-width batch spends most of its work on padding. Both variants distil the same teacher into
the same inherited student on the same English corpus, with the same seed and time budget, side
by side in one run, each in its own process; the table shows steps done, texts/s over the whole
budget (XLA compiles and held-out scoring included), the mean batch width and the held-out agreement with the teacher (sentence cosine, hidden-state MSE).

The corpus (`english_corpus`) is the training split of every English EVAL.md set that has one
(SST-2 sentences of 6+ words, AG News, BBC, Banking77, CLINC150 in-scope, MIND title + abstract)
and the reviews of the three Amazon categories: what a user's own workspace would hold, and no
test text of any benchmark.

    python benchmarks/distill_batching.py                    # 2 x 5 minutes on 2 cores
    python benchmarks/distill_batching.py --work DIR         # again: finished variants are reused as they are
    python benchmarks/distill_batching.py --work DIR         # again: reuses finished runs
    python benchmarks/distill_batching.py --write-corpus corpus.txt   # the corpus only

Writes benchmarks/results/distill_batching.{json,md}.
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import markdown_table, portable, write_results  # noqa: E402

VARIANTS = {"fixed width": ["--no-group-by-length"], "grouped + trimmed": []}
CORPUS_SETS = ("sst2", "ag_news", "bbc", "banking77", "clinc150", "mind")
BATCH = 32  # distill's default --batch-size
AMAZON = ("All_Beauty_5", "Gift_Cards_5", "Magazine_Subscriptions_5")


def english_corpus(data_dir: Path | None = None, sst2_limit: int = 25_000) -> list[str]:
    """Training texts of the English benchmarks plus Amazon review texts, one line each."""
    from pipelines.quality.datasets import SHARED_DATA, load_dataset

    data_dir = Path(data_dir or SHARED_DATA)
    texts: list[str] = []
    for name in CORPUS_SETS:
        train = [e.text for e in load_dataset(name, data_dir=data_dir).train]
        if name == "sst2":  # the training file is mostly phrases: keep the sentences
            train = [t for t in train if len(t.split()) >= 6][:sst2_limit]
        texts.extend(train)
    for category in AMAZON:
        path = data_dir / "amazon-reviews-2018-5core-small" / f"{category}.json.gz"
        with gzip.open(path, "rt", encoding="utf-8") as lines:
            for line in lines:
                review = json.loads(line)
                text = " ".join(str(review.get("reviewText") or "").split())
                if text:
                    texts.append(text)
    return [" ".join(t.split()) for t in texts if t.strip()]


def run_variant(corpus: Path, work: Path, minutes: float, flags: list[str],
                teacher: str | None) -> dict:
    """One `opinionrec distill` run in its own process; its metrics and median speed."""
    command = [sys.executable, "-m", "pipelines.cli", "distill", "--workspace", str(work),
               "--texts", str(corpus), "--max-minutes", str(minutes), *flags]
    if teacher:
        command += ["--teacher", teacher]
    done = work / "distill" / "metrics.json"
    if not done.exists():  # a finished variant is reused, never continued: its budget is spent
        subprocess.run(command, check=True, cwd=Path(__file__).resolve().parents[1])
    metrics = json.loads(done.read_text())
    history = metrics["history"]
    final, at_init = metrics["held_out_final"], metrics["held_out_at_init"]
    return {
        "steps": metrics["step"],
        "mean_batch_width": metrics.get("mean_batch_width"),
        # Over the whole budget: XLA compiles and held-out scoring included, as a user sees it.
        "texts_per_second": metrics["step"] * BATCH / (minutes * 60),
        "train_texts": metrics["train_texts"],
        "held_out_at_init": at_init,
        "held_out_final": final,
        "history": history,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=5.0,
                        help="distillation budget per variant (default: %(default)s)")
    parser.add_argument("--teacher", default=None,
                        help="teacher folder (default: the packaged all-MiniLM-L6-v2)")
    parser.add_argument("--write-corpus", type=Path, metavar="FILE",
                        help="write the English corpus to FILE and stop")
    parser.add_argument("--work", type=Path, default=None,
                        help="folder for the two workspaces (default: a temporary one)")
    args = parser.parse_args(argv)

    if args.write_corpus:
        texts = english_corpus()
        args.write_corpus.write_text("\n".join(texts) + "\n", encoding="utf-8")
        print(f"{len(texts)} texts -> {args.write_corpus}")
        return 0

    work = args.work or Path(tempfile.mkdtemp(prefix="opinionrec-distill-batching-"))
    work.mkdir(parents=True, exist_ok=True)
    corpus = work / "corpus.txt"
    texts = english_corpus()
    corpus.write_text("\n".join(texts) + "\n", encoding="utf-8")
    results: dict = {"minutes": args.minutes, "corpus_texts": len(texts),
                     "teacher": args.teacher or "all-MiniLM-L6-v2 (packaged)"}
    rows = []
    for variant, flags in VARIANTS.items():
        slug = "grouped" if not flags else "fixed"
        r = results[variant] = run_variant(corpus, work / slug, args.minutes, flags, args.teacher)
        rows.append([variant, r["steps"], f"{r['mean_batch_width'] or 64:.1f}",
                     f"{r['texts_per_second']:.1f}",
                     f"{r['held_out_final']['sentence_cosine']:.3f}",
                     f"{r['held_out_final']['hidden_mse']:.3f}"])
    fixed, grouped = results["fixed width"], results["grouped + trimmed"]
    results["speedup_texts_per_second"] = (grouped["texts_per_second"]
                                           / fixed["texts_per_second"])
    init = grouped["held_out_at_init"]
    table = markdown_table(["batches", "steps", "mean width", "texts/s",
                            "held-out sentence cosine", "held-out hidden MSE"], rows)
    text = (f"General distillation of the inherited ALBERT student (E=128), {args.minutes:g} "
            f"minutes per variant, batch 32 x up to 64 tokens, on {len(texts):,} English texts "
            f"(`benchmarks/distill_batching.py`). Right after inheritance: cosine "
            f"{init['sentence_cosine']:.3f}, MSE {init['hidden_mse']:.3f}.\n\n{table}\n\n"
            f"Grouped batches: {results['speedup_texts_per_second']:.2f}x texts/s.\n")
    print(text)
    write_results("distill_batching", portable(results), text)
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
