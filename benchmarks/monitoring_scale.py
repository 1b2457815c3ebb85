"""The monitoring jobs at scale: `features` (the text model over every sentence) and `track`
(reviews assigned to saved topic centroids, aggregated per event-time window) on 10^5 generated
reviews, with wall time, documents/s and the share of the features job spent in model calls.

Side by side in one run, on one workspace of sample-data reviews (ingest timed once, as context):
  - DirectRunner in memory (the stages' default);
  - DirectRunner, multi-processing with 2 workers (`--direct_num_workers 2
    --direct_running_mode multi_processing`).
Each variant runs `features` then `track` (`--refit`, so each fits the topics the same way; the
fit is in-process scikit-learn and reported apart from the Beam job). The model share is the sum
of RunInference's `inference_batch_latency_micro_secs` over the job (summed over workers) against
the job's wall time.

    python benchmarks/monitoring_scale.py --model WS/finetune/text_features     # 10^5 reviews
    python benchmarks/monitoring_scale.py --model ... --reviews 10000 --repeats 1

Writes benchmarks/results/monitoring_scale.json and monitoring_scale.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks._common import markdown_table, write_results  # noqa: E402
from pipelines import cli  # noqa: E402
from pipelines.ingest.stats import parquet_rows  # noqa: E402

VARIANTS = {
    "in memory": [],
    "2 processes": ["--direct_num_workers", "2", "--direct_running_mode", "multi_processing"],
}


def prepare(folder: Path, reviews: int, seed: int) -> dict:
    """sample-data reviews + ingest into `folder`; returns the ingest's wall seconds and docs."""
    assert cli.main(["sample-data", "--workspace", str(folder), "--reviews", str(reviews),
                     "--news", "20", "--impressions", "50", "--seed", str(seed)]) == 0
    started = time.perf_counter()
    assert cli.main(["ingest", "--workspace", str(folder)]) == 0
    return {"ingest_s": round(time.perf_counter() - started, 1)}


def stage_summary(folder: Path, stage: str) -> dict:
    return json.loads((folder / stage / "_stage.json").read_text())["summary"]


def run_variant(folder: Path, model: Path, beam_args: list[str]) -> dict:
    started = time.perf_counter()
    assert cli.main(["features", "--workspace", str(folder), "--model", str(model),
                     *beam_args]) == 0
    features_s = time.perf_counter() - started
    features = stage_summary(folder, "features")
    features["docs"] = parquet_rows(folder / "features" / "docs")
    started = time.perf_counter()
    assert cli.main(["track", "--workspace", str(folder), "--refit", *beam_args]) == 0
    track_s = time.perf_counter() - started
    track = stage_summary(folder, "track")
    return {"features_s": features_s, "features_beam_s": features["beam_seconds"],
            "inference_s": features["inference_seconds"],
            "inference_calls": features["inference_calls"], "sentences": features["sentences"],
            "feature_docs": features["docs"],
            "track_s": track_s, "track_fit_s": track["fit_seconds"],
            "track_beam_s": track["beam_seconds"], "docs": track["docs"],
            "docs_without_time": track["docs_without_time"], "topics": track["topics"],
            "windows": track["windows"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True,
                        help="a text_features SavedModel (a workspace's finetune/text_features)")
    parser.add_argument("--reviews", type=int, default=100_000,
                        help="generated reviews (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--keep", type=Path, default=None,
                        help="build the workspace here and keep it (default: a temporary folder)")
    args = parser.parse_args(argv)
    logging.getLogger().setLevel(logging.WARNING)

    scratch = args.keep or Path(tempfile.mkdtemp(prefix="bench-monitoring-"))
    results = []
    try:
        context = prepare(scratch, args.reviews, args.seed)
        for name in args.variants:
            runs = [run_variant(scratch, args.model, VARIANTS[name]) for _ in range(args.repeats)]
            last = runs[-1]

            def median(key: str) -> float:
                return round(statistics.median(r[key] for r in runs), 2)

            row = {"variant": name, **{k: last[k] for k in (
                "docs", "feature_docs", "sentences", "inference_calls", "docs_without_time", "topics",
                "windows")}, **{k: median(k) for k in (
                    "features_s", "features_beam_s", "inference_s", "track_s", "track_fit_s",
                    "track_beam_s")}, "runs": [{k: round(v, 2) if isinstance(v, float) else v
                                                for k, v in r.items()} for r in runs]}
            row["features_docs_per_s"] = round(row["feature_docs"] / row["features_s"], 1)
            row["track_docs_per_s"] = round(row["docs"] / row["track_s"], 1)
            row["inference_share"] = round(row["inference_s"] / row["features_beam_s"], 3)
            results.append(row)
            print(f"{name}: features {row['features_s']:.0f} s ({row['features_docs_per_s']}/s, "
                  f"model {row['inference_share']:.0%}), track {row['track_s']:.0f} s "
                  f"({row['track_docs_per_s']}/s)", flush=True)
    finally:
        if args.keep is None:
            shutil.rmtree(scratch, ignore_errors=True)

    headers = ["variant", "documents", "sentences", "features s", "documents/s",
               "in model calls", "reviews tracked", "track s (fit + Beam)", "reviews/s",
               "topics x windows"]
    rows = [[r["variant"], r["feature_docs"], r["sentences"], r["features_s"],
             r["features_docs_per_s"],
             f"{r['inference_s']:.0f} s ({r['inference_share']:.0%})", r["docs"],
             f"{r['track_s']} ({r['track_fit_s']} + {r['track_beam_s']})", r["track_docs_per_s"],
             f"{r['topics']} x {r['windows']}"] for r in results]
    table = markdown_table(headers, rows)
    print(table)
    note = (f"{args.reviews:,} generated reviews (sample-data, seed {args.seed}), ingest "
            f"{context['ingest_s']} s; model `{args.model}`. `features` runs the text_features "
            "SavedModel over every sentence (RunInference) and joins sentences into documents and "
            "profiles; 'in model calls' is the time inside the model summed over workers, against "
            "the Beam job's wall time. `track --refit` fits topics on a 5,000-review sample "
            "(k 2-12 by stability), then its Beam job assigns every review to a centroid and "
            "aggregates windows; reviews copied onto several listings count once, so its review "
            f"count can be below the features job's. Median of {args.repeats} run(s).")
    write_results("monitoring_scale", {"reviews": args.reviews, "model": str(args.model),
                                       "repeats": args.repeats, **context, "results": results},
                  table + "\n\n" + note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
