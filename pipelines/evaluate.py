"""`opinionrec evaluate`: score a model folder of `opinionrec finetune --task` on a dataset.

EVAL.md's split and metrics: accuracy and macro-F1 for classification and aspect polarity,
in-scope accuracy and out-of-scope recall for intents, exact-span precision/recall/F1 for aspect
terms. Prints the metrics and, with `--output`, writes them as JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

log = logging.getLogger("opinionrec")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True,
                        help="model folder written by `opinionrec finetune --task ... --output`")
    parser.add_argument("--dataset", default=None,
                        help="benchmark dataset to score on (default: the one it was trained on)")
    parser.add_argument("--task", default=None,
                        choices=["sentiment", "topic", "intent", "aspect-terms", "aspect-polarity"],
                        help="check that the model does this task")
    parser.add_argument("--split", choices=["test", "dev"], default="test",
                        help="which part of EVAL.md's split (default: %(default)s)")
    parser.add_argument("--output", default=None, help="write the metrics to this JSON file")


def run(args: argparse.Namespace, beam_args: list[str]) -> int:
    from pipelines import tasks
    from pipelines.quality.datasets import DATASETS, load_dataset

    info = tasks.read_info(args.model)
    if args.task and args.task != info["task"]:
        raise SystemExit(f"{args.model} was fine-tuned for {info['task']}, not {args.task}")
    name = args.dataset or info["dataset"]
    if name not in DATASETS:
        raise SystemExit(f"unknown --dataset {name!r}; choose from {', '.join(DATASETS)}")
    result = tasks.evaluate_task(args.model, load_dataset(name), split=args.split)
    result = {"model": str(args.model), "task": info["task"], "dataset": name,
              "split": args.split, **result}
    width = max(len(k) for k in result)
    for key, value in result.items():
        shown = f"{value:.4f}" if isinstance(value, float) else value
        print(f"{key:<{width}}  {shown}")
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
        log.info("evaluate: metrics -> %s", args.output)
    return 0
