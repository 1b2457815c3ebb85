"""`opinionrec trends` at scale: the Beam job's wall time and impressions/s, in-memory DirectRunner
against two worker processes, with the bursts it finds scored against the planted ones.

Side by side in one run, on sample-data's news and impression logs at each size (the candidate
impressions per size are about 12.5 x `--impressions`; 8,000 gives ~10^5):
  - DirectRunner in memory (the default of `opinionrec trends`);
  - DirectRunner, multi-processing with 2 workers (`--direct_num_workers 2
    --direct_running_mode multi_processing`).
Each variant runs `--repeats` times on the same ingested workspace (median reported). Ingest is
not timed here (benchmarks/ingest.py measures it). The trends stage runs no model: its time is
the Beam job (reading Parquet, windowing, combining, writing) and the burst scoring and plot.

    python benchmarks/trends.py                       # 10^4 and 10^5 impressions, ~5 minutes
    python benchmarks/trends.py --impressions 800 8000 80000   # adds ~10^6

Writes benchmarks/results/trends.json and trends.md.
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

VARIANTS = {
    "in memory": [],
    "2 processes": ["--direct_num_workers", "2", "--direct_running_mode", "multi_processing"],
}


def prepare(folder: Path, impressions: int, news: int, seed: int) -> float:
    """sample-data + ingest into `folder`; returns the ingest's wall seconds."""
    assert cli.main(["sample-data", "--workspace", str(folder), "--reviews", "100", "--users",
                     "20", "--items", "8", "--news", str(news), "--impressions",
                     str(impressions), "--seed", str(seed)]) == 0
    started = time.perf_counter()
    assert cli.main(["ingest", "--workspace", str(folder)]) == 0
    return time.perf_counter() - started


def run_trends(folder: Path, window: str, beam_args: list[str]) -> dict:
    started = time.perf_counter()
    assert cli.main(["trends", "--workspace", str(folder), "--window", window, *beam_args]) == 0
    wall = time.perf_counter() - started
    summary = json.loads((folder / "trends" / "bursts.json").read_text())["summary"]
    return {"wall_s": wall, **summary}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--impressions", type=int, nargs="+", default=[800, 8000],
                        help="impression logs per size (default: %(default)s)")
    parser.add_argument("--news", type=int, default=600, help="articles (default: %(default)s)")
    parser.add_argument("--window", default="3h", help="trends window (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args(argv)
    logging.getLogger().setLevel(logging.WARNING)

    results = []
    scratch = Path(tempfile.mkdtemp(prefix="bench-trends-"))
    try:
        for impressions in args.impressions:
            folder = scratch / f"ws{impressions}"
            ingest_s = prepare(folder, impressions, args.news, args.seed)
            for name, beam_args in VARIANTS.items():
                runs = [run_trends(folder, args.window, beam_args) for _ in range(args.repeats)]
                wall = statistics.median(r["wall_s"] for r in runs)
                beam_s = statistics.median(r["beam_seconds"] for r in runs)
                last = runs[-1]
                row = {
                    "impression_logs": impressions, "variant": name,
                    "impressions": last["impressions"], "windows": last["windows"],
                    "wall_s": round(wall, 2), "beam_s": round(beam_s, 2),
                    "scoring_s": round(statistics.median(r["scoring_seconds"] for r in runs), 2),
                    "impressions_per_s": round(last["impressions"] / wall),
                    "runs_s": [round(r["wall_s"], 2) for r in runs],
                    "ingest_s": round(ingest_s, 1), **{
                        k: last["against_planted"][k] for k in ("planted", "recall",
                                                               "precision")}}
                results.append(row)
                print(f"{impressions} logs, {name}: {row['impressions']:,} impressions, "
                      f"{wall:.1f} s ({row['impressions_per_s']:,}/s), recall "
                      f"{row['recall']}, precision {row['precision']}", flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    headers = ["impressions", "variant", "wall s (median)", "Beam job s", "scoring + plot s",
               "impressions/s", "bursts planted", "recall", "precision"]
    rows = [[r["impressions"], r["variant"], r["wall_s"], r["beam_s"], r["scoring_s"],
             r["impressions_per_s"], r["planted"], r["recall"], r["precision"]]
            for r in results]
    table = markdown_table(headers, rows)
    print(table)
    note = ("Wall time is the whole `opinionrec trends` call in-process (Beam job, burst scoring, "
            "plot, files); median of the repeats. No model inference: the stage counts impressions "
            "of articles whose topic is their news category.")
    write_results("trends", {"window": args.window, "news": args.news, "repeats": args.repeats,
                             "results": results}, table + "\n\n" + note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
