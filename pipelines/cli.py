"""The `opinionrec` command: one sub-command per stage, each importing its heavy code lazily."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Sequence

# name -> (module, one-line help). A module provides `add_arguments(parser)` and
# `run(args, beam_args) -> int`; it is imported only when its command runs, so `--help` is fast.
COMMANDS: dict[str, tuple[str, str]] = {
    "sample-data": ("pipelines.sample_data", "Generate reviews and news with planted structure."),
    "ingest": ("pipelines.ingest",
               "Beam job: read reviews, news and labelled datasets; clean, dedupe, validate."),
    "vocab": ("pipelines.vocab", "Train the SentencePiece vocabulary and mine aspect terms."),
    "pretraining-data": ("pipelines.pretraining_data",
                         "Beam job: SOP/MLM pretraining instances (TFRecord) from docs."),
    "pretrain": ("pipelines.pretrain", "Pretrain ALBERT with MLM + sentence-order prediction."),
    "distill": ("pipelines.distill",
                "Initialise an ALBERT student from the pretrained teacher and distil it on your "
                "text."),
    "compare": ("pipelines.compare",
                "ALBERT vs its BERT equivalent: size, memory, speed, XLA, learning per minute."),
    "finetune": ("pipelines.finetune",
                 "Fine-tune sentiment/topic heads and export text_features, or (--task) one "
                 "task on a benchmark dataset."),
    "evaluate": ("pipelines.evaluate",
                 "Score a `finetune --task` model on a benchmark dataset (EVAL.md's metrics)."),
    "topics": ("pipelines.topics",
               "Unsupervised topics: cluster sentence embeddings, name and score them."),
    "trends": ("pipelines.trends",
               "Beam job: topic volume over event-time windows, and the bursts that stand out."),
    "track": ("pipelines.tracking",
              "Beam job: review topics assigned online to saved centroids, tracked over time, "
              "with bursts, sentiment shifts and new topics."),
    "report": ("pipelines.report",
               "One HTML page (and JSON) of sentiment, aspects and topics over time, pros, cons."),
    "features": ("pipelines.features", "Beam RunInference job: text features and profiles."),
    "describe": ("pipelines.describe",
                 "Each item's pros and cons from its reviews, with counts and quotes."),
    "train-recommender": ("pipelines.train_recommender",
                          "Train the TFRS two-tower retrieval model and the DCN ranker."),
    "train-qa": ("pipelines.train_qa",
                 "Fine-tune review question answering on SubjQA and export review_qa."),
    "ask": ("pipelines.ask", "Answer a question about an item from its reviews (review_qa)."),
    "export": ("pipelines.export", "Assemble the TF Serving model folder and models.config."),
    "serve": ("pipelines.serve", "Serve exported models over the TF Serving REST API."),
    "recommend": ("pipelines.recommend", "Ask the server for a user's explained recommendations."),
    "demo": ("pipelines.demo", "Run the whole chain on sample data, skipping up-to-date stages."),
    "run": ("pipelines.run_chain",
            "Run the whole chain on your own files within a time budget (--minutes)."),
}

# Commands whose unknown arguments are Beam pipeline options (--runner, --direct_num_workers, ...).
BEAM_COMMANDS = {"ingest", "pretraining-data", "features", "trends", "track", "demo",
                  "run"}


def _chosen_command(argv: Sequence[str]) -> str | None:
    for token in argv:
        if token in COMMANDS:
            return token
        if not token.startswith("-"):
            return None
    return None


def build_parser(chosen: str | None) -> argparse.ArgumentParser:
    """Top-level parser; only the chosen sub-command's module is imported to add its arguments."""
    parser = argparse.ArgumentParser(
        prog="opinionrec",
        description=(
            "Opinion mining and explained recommendations from reviews and news. Each stage reads "
            "and writes a workspace folder (default ./workspace); `opinionrec demo` runs them all."
        ),
        epilog="Run `opinionrec COMMAND --help` for a command's options.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            module = importlib.import_module(module_name)
            module.add_arguments(sub_parser)
            if name in BEAM_COMMANDS:
                sub_parser.epilog = (
                    "Other arguments are passed to Beam as pipeline options, e.g. --runner "
                    "FlinkRunner, --direct_num_workers 2 --direct_running_mode multi_processing."
                )
    return parser


class _KnownNoise(logging.Filter):
    """Drops Beam warnings that are no error here: the import-time one about optional GCP client
    libraries, and RunInference's "Resource module is not available", which it logs on Linux too
    when an optional import beside `resource` fails (it only means no memory figure)."""

    NOISE = ("apitools not found", "Resource module is not available")

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.NOISE)


def configure_logging(verbose: bool) -> None:
    root = logging.getLogger()
    if not any(isinstance(f, _KnownNoise) for f in root.filters):
        root.addFilter(_KnownNoise())
    level, line = logging.DEBUG if verbose else logging.INFO, logging.Formatter(
        "%(asctime)s %(levelname).1s %(name)s: %(message)s", datefmt="%H:%M:%S")
    logging.basicConfig(level=level)
    # basicConfig does nothing when an import has configured logging first (Beam's "apitools
    # not found" warning, logged through the root logger, installs a bare handler at WARNING,
    # which hid every INFO line of the quality harness): take over the level and format.
    root.setLevel(level)
    for handler in root.handlers:
        if type(handler) is logging.StreamHandler:  # not pytest's capture handlers
            handler.setFormatter(line)
    # TensorFlow and Beam are chatty at INFO.
    for noisy in ("apache_beam", "absl", "tensorflow", "h5py", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None:  # the console script (tests call main(argv) under their own capture)
        from pipelines import native_log

        native_log.install()
    argv = list(sys.argv[1:] if argv is None else argv)
    # Before a command module imports Beam: Beam logs a warning at import, and the first record
    # through an unconfigured root logger configures it at WARNING, hiding every INFO line after.
    configure_logging("-v" in argv or "--verbose" in argv)
    chosen = _chosen_command(argv)
    parser = build_parser(chosen)
    if chosen in BEAM_COMMANDS:
        args, beam_args = parser.parse_known_args(argv)
    else:
        args, beam_args = parser.parse_args(argv), []
    module = importlib.import_module(COMMANDS[args.command][0])
    return int(module.run(args, beam_args) or 0)


if __name__ == "__main__":
    sys.exit(main())
