"""Fixed-width batches against length-grouped, trimmed ones: fine-tuning speed and accuracy.

Fine-tuning pads every batch to the task's sequence length; on short texts (SST-2 sentences,
Banking77 queries) most of that work is padding. Grouping texts of similar length into a batch
and trimming it to one of a few widths (`albert_tf.text_tasks.length_grouped_order`,
`trim_padding`) removes it. Both variants fine-tune the same encoder on the same data with the
same seed, learning rate and time budget, side by side in one run; the table shows steps done,
examples/s, the mean batch width and the test score (EVAL.md splits).

    python benchmarks/finetune_batching.py                      # ~15 minutes on 2 cores
    python benchmarks/finetune_batching.py --preset WS/distill/preset --minutes 2

Writes benchmarks/results/finetune_batching.{json,md}.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import markdown_table, portable, write_results  # noqa: E402

VARIANTS = {"fixed width": False, "grouped + trimmed": True}


def run_variant(dataset, preset: str, work: Path, options, grouped: bool) -> dict:
    """Fine-tune once under the budget and score on test; the training log gives the speed."""
    import json

    from pipelines import tasks

    folder = work / dataset.name / ("grouped" if grouped else "fixed")
    summary = tasks.train_task(dataset, preset, folder,
                               dataclasses.replace(options, group_by_length=grouped))
    result = tasks.evaluate_task(folder, dataset)
    history = [json.loads(line) for line in
               (folder / "training" / "logs" / "history.jsonl").read_text().splitlines()]
    steps_per_second = [h["steps_per_second"] for h in history[1:] if "steps_per_second" in h]
    rate = statistics.median(steps_per_second) if steps_per_second else None
    return {
        "steps": summary["steps"],
        "planned_steps": summary["planned_steps"],
        "best_step": summary["best_step"],
        "train_seconds": summary["train_seconds"],
        "sequence_length": summary["sequence_length"],
        "mean_batch_width": summary.get("mean_batch_width", summary["sequence_length"]),
        "examples_per_second": None if rate is None else rate * options.batch_size,
        "predict_seconds": result["predict_seconds"],
        "test": {m: result[m] for m in dataset.metrics},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["sst2", "banking77"])
    parser.add_argument("--preset", default=None,
                        help="encoder preset (default: the packaged all-MiniLM-L6-v2 teacher; "
                        "the ALBERT student has the same width, so the same speed-up)")
    parser.add_argument("--minutes", type=float, default=3.0,
                        help="training budget per variant (default: %(default)s)")
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--max-train", type=int, default=20000)
    parser.add_argument("--tokens-per-second", type=float, default=1500.0,
                        help="training speed (slots/s) that plans the schedule in the budget")
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args(argv)

    from albert_tf.distillation import minilm_folder
    from pipelines.quality.datasets import load_dataset
    from pipelines.tasks import TaskOptions

    preset = args.preset or str(minilm_folder())
    options = TaskOptions(learning_rate=args.learning_rate, max_minutes=args.minutes,
                          tokens_per_second=args.tokens_per_second, max_train=args.max_train,
                          eval_every=100, patience=3)
    work = args.work or Path(tempfile.mkdtemp(prefix="opinionrec-batching-"))
    results: dict = {"preset": preset, "minutes": args.minutes,
                     "learning_rate": args.learning_rate, "max_train": args.max_train}
    rows = []
    for name in args.datasets:
        dataset = load_dataset(name, max_train=args.max_train)
        entry = results[name] = {}
        for variant, grouped in VARIANTS.items():
            r = entry[variant] = run_variant(dataset, preset, work, options, grouped)
            score = " / ".join(f"{100 * v:.2f}" for v in r["test"].values())
            rows.append([name, variant, r["steps"], f"{r['mean_batch_width']:.1f}",
                         f"{r['examples_per_second']:.1f}", r["train_seconds"],
                         r["predict_seconds"], score])
        fixed, grouped_r = entry["fixed width"], entry["grouped + trimmed"]
        entry["speedup_examples_per_second"] = (grouped_r["examples_per_second"]
                                                / fixed["examples_per_second"])
        entry["predict_speedup"] = fixed["predict_seconds"] / grouped_r["predict_seconds"]
    table = markdown_table(["dataset", "batches", "steps", "mean width", "examples/s",
                            "train s", "test predict s", "test score"], rows)
    ratios = "; ".join(
        f"{n}: {results[n]['speedup_examples_per_second']:.2f}x examples/s in training, "
        f"{results[n]['predict_speedup']:.2f}x faster test prediction" for n in args.datasets)
    text = (f"Fine-tuning `{portable(preset)}` for {args.minutes:g} minutes per variant "
            f"(LR {args.learning_rate:g}, at most {args.max_train} training examples).\n\n"
            f"{table}\n\n{ratios}.\n")
    print(text)
    write_results("finetune_batching", portable(results), text)
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
