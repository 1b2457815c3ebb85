"""The headline ALBERT vs BERT table: the distilled ALBERT student beside its BERT teacher.

Side by side in one run, each encoder loaded from its preset in a fresh process (so peak RSS is
its own): parameters, checkpoint MB, inference tokens/s at 32 x 128 in float32 with and without
XLA and in mixed_bfloat16, and peak RSS; then the accuracy of each on every dataset that
`benchmarks/quality.py` has measured (`benchmarks/results/quality.json`, keys `albert` = the
student, `teacher`, `albert_scratch`, `tfidf`).

    python benchmarks/student_vs_teacher.py --student /tmp/opinionrec-distill/distill/preset
    python benchmarks/student_vs_teacher.py --reuse-profiles   # new quality.json rows only

Writes benchmarks/results/student_vs_teacher.{json,md}; ~6 minutes on 2 idle cores.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from albert_tf.comparison import encoder_profile  # noqa: E402
from benchmarks._common import RESULTS, markdown_table, write_results  # noqa: E402
from pipelines.compare import encoder_rows  # noqa: E402

log = logging.getLogger("opinionrec")

ENCODERS = ("teacher", "albert", "albert_scratch")
TITLES = {"teacher": "teacher: all-MiniLM-L6-v2 (BERT, 6 layers)",
          "albert": "ALBERT student (distilled)",
          "albert_scratch": "ALBERT from scratch (tiny)", "tfidf": "TF-IDF + LR"}


def headline_metric(metrics: list[str]) -> str:
    """The figure a set is judged by: F1 for aspect spans, else the first metric (accuracy)."""
    return "f1" if "f1" in metrics else metrics[0]


def headline(result: dict) -> float | None:
    """One result's headline figure (None when it was not measured)."""
    return result.get(headline_metric(result.get("metrics") or ["accuracy"]))


def baseline_of(entries: dict) -> dict:
    """The simple baseline measured beside the encoders: TF-IDF + LR, or the opinion lexicon."""
    for name in ("tfidf", "lexicon"):
        if isinstance(entries.get(name), dict) and "skipped" not in entries[name]:
            return entries[name]
    return {}


def accuracy_rows(quality: dict) -> list[list[str]]:
    """One row per dataset of quality.json with at least the teacher or the student measured."""
    rows = []
    for name, entries in sorted(quality.items()):
        if not isinstance(entries, dict) or name.endswith("_topics"):
            continue
        if not any(isinstance(entries.get(m), dict) and "metrics" in entries[m]
                   for m in ("albert", "teacher")):
            continue
        metric = headline_metric(next(entries[m]["metrics"] for m in entries
                                      if isinstance(entries[m], dict) and entries[m].get("metrics")))
        cells = []
        for result in (*(entries.get(m) or {} for m in ENCODERS), baseline_of(entries)):
            value = result.get(metric)
            cells.append(f"{100 * value:.2f}" if isinstance(value, float) else "—")
        rows.append([name, metric, *cells])
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--student", type=Path,
                        default=Path("/tmp/opinionrec-distill/distill/preset"))
    parser.add_argument("--teacher", type=Path, default=None,
                        help="default: the packaged all-MiniLM-L6-v2")
    parser.add_argument("--scratch", type=Path,
                        default=Path("/tmp/opinionrec-bilingual-corpus/pretrain/preset"))
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--sequence-length", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quality", type=Path, default=RESULTS / "quality.json")
    parser.add_argument("--reuse-profiles", action="store_true",
                        help="keep the size and speed rows of the last run's "
                        "student_vs_teacher.json and only refresh the quality table (after new "
                        "benchmarks/quality.py results)")
    args = parser.parse_args(argv)
    from pipelines.cli import configure_logging

    configure_logging(False)
    if args.teacher is None:
        from albert_tf.distillation import minilm_folder

        args.teacher = minilm_folder()
    presets = {"teacher": args.teacher, "albert": args.student, "albert_scratch": args.scratch}
    profiles, measured = {}, None
    previous = RESULTS / "student_vs_teacher.json"
    if args.reuse_profiles:
        if not previous.exists():
            parser.error(f"--reuse-profiles: no {previous} yet; run without it first")
        last = json.loads(previous.read_text())
        profiles = last["profiles"]
        measured = last.get("profiles_measured") or {k: last.get(k) for k in ("date", "commit")}
        presets = {}
    for model, preset in presets.items():
        if not Path(preset, "config.json").exists():
            log.warning("student_vs_teacher: no %s preset at %s; left out", model, preset)
            continue
        profiles[model] = encoder_profile(preset, args.batch, args.sequence_length, args.repeats)
    quality = json.loads(args.quality.read_text()) if args.quality.exists() else {}

    size_headers, size_rows = encoder_rows({TITLES[m]: p for m, p in profiles.items()},
                                           profiles.get("teacher"))
    text = (f"The distilled ALBERT student beside its BERT teacher. Inference at "
            f"{args.batch} x {args.sequence_length} tokens, one process per encoder, median of "
            f"{args.repeats} calls.\n\n")
    if measured:
        text = text.replace(".\n\n", f" (size and speed rows measured {measured['date']}, "
                                        f"commit {measured['commit']}).\n\n", 1)
    text += markdown_table(size_headers, size_rows)
    text += ("\n\nQuality (percent, EVAL.md test splits, `benchmarks/quality.py`): F1 for "
             "aspect terms, else accuracy:\n\n")
    text += markdown_table(["dataset", "metric", *(TITLES[m] for m in ENCODERS),
                            "TF-IDF + LR (lexicon for aspects)"],
                           accuracy_rows(quality))
    result = {"benchmark": "student_vs_teacher", "batch": args.batch,
              **({"profiles_measured": measured} if measured else {}),
              "sequence_length": args.sequence_length, "profiles": profiles,
              "accuracy": {name: {**{m: headline(entries.get(m) or {}) for m in ENCODERS},
                                  "baseline": headline(baseline_of(entries))}
                           for name, entries in quality.items()
                           if isinstance(entries, dict) and any(
                               isinstance(entries.get(m), dict) for m in ("albert", "teacher"))}}
    path = write_results("student_vs_teacher", result, text)
    print(text)
    print(f"\n{path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
