"""`opinionrec demo`: the whole chain on generated sample data, skipping up-to-date stages.

sample-data -> ingest -> vocab -> distill (or pretraining-data -> pretrain) -> finetune ->
features -> describe -> trends -> track -> train-recommender -> export -> report, then a
TF-Serving-compatible server on loopback answers `recommend` for a few users. Sized to finish
within 15 minutes on 2 CPU cores; a second run only redoes what changed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import time

from pipelines import workspace as ws_lib

log = logging.getLogger("opinionrec")

# name -> extra arguments of each stage in the demo (on top of --workspace and --if-stale).
# The encoder: an ALBERT student distilled from the packaged teacher on the sample reviews, or,
# without the teacher, an ALBERT pretrained from scratch (`demo --encoder albert`).
STUDENT_STAGES: list[tuple[str, list[str]]] = [
    ("distill", ["--sequence-length", "64", "--steps", "600", "--max-minutes", "3.5",
                 "--checkpoint-every", "50"]),
    ("finetune", ["--encoder", "student", "--sequence-length", "64", "--epochs", "1",
                  "--max-minutes", "3.5"]),
]
SCRATCH_STAGES: list[tuple[str, list[str]]] = [
    ("pretraining-data", ["--sequence-length", "64"]),
    ("pretrain", ["--config", "mini", "--sequence-length", "64", "--batch-size", "32",
                  "--steps", "1200", "--max-minutes", "4", "--checkpoint-every", "200",
                  "--learning-rate", "2e-3"]),
    ("finetune", ["--encoder", "albert", "--sequence-length", "96", "--epochs", "1",
                  "--max-minutes", "4"]),
]


def demo_stages(encoder: str) -> list[tuple[str, list[str]]]:
    """The demo's stages for the encoder (`student` or `albert`)."""
    return [("sample-data", []), ("ingest", []), ("vocab", ["--vocabulary-size", "4000"]),
            *(STUDENT_STAGES if encoder == "student" else SCRATCH_STAGES),
            ("features", []), ("describe", []), ("trends", ["--window", "3h"]), ("track", []),
            ("train-recommender", []), ("export", []), ("report", [])]


BEAM_STAGES = {"ingest", "pretraining-data", "features", "trends", "track"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workspace", default=os.environ.get("OPINIONREC_WORKSPACE", "workspace"),
                        help="workspace folder (default: %(default)s)")
    parser.add_argument("--force", action="store_true",
                        help="re-run every stage even when its outputs are up to date")
    parser.add_argument("--users", type=int, default=3,
                        help="how many sample users to show recommendations for")
    parser.add_argument("--k", type=int, default=5, help="recommendations per user")
    parser.add_argument("--port", default="8501",
                        help="REST port of the demo server; auto = any free port (default: 8501)")
    parser.add_argument("--serve", action="store_true",
                        help="keep serving after the demo (Ctrl-C to stop)")
    from pipelines.run_chain import add_encoder_argument

    add_encoder_argument(parser)
    parser.add_argument("--reviews", type=int, default=None,
                        help="sample-data size (reviews); default: the sample-data default")


def stage_argv(name: str, extra: list[str], args: argparse.Namespace, beam_args: list[str]
               ) -> list[str]:
    argv = [name, "--workspace", args.workspace, *extra]
    if not args.force:
        argv.append("--if-stale")
    if name == "sample-data" and getattr(args, "reviews", None):
        argv += ["--reviews", str(args.reviews)]
    if name in BEAM_STAGES:
        argv += beam_args
    return argv


def run_stages(args: argparse.Namespace, beam_args: list[str],
               stages: list[tuple[str, list[str]]], command: str = "demo",
               first: int = 1, total: int | None = None) -> list[dict]:
    """Run every stage in-process, in order; return what each did and how long it took. `first`
    and `total` number them in the log when they are part of a longer chain."""
    from pipelines import cli

    ws = ws_lib.workspace_from_args(args)
    report = []
    for index, (name, extra) in enumerate(stages, start=first):
        log.info("%s: [%d/%d] %s", command, index, total or len(stages), name)
        before = ws_lib.read_stage_record(ws, name)
        start = time.perf_counter()
        code = cli.main(stage_argv(name, extra, args, beam_args))
        if code:
            raise SystemExit(f"{command}: stage {name} failed with exit code {code}")
        after = ws_lib.read_stage_record(ws, name)
        ran = after is not None and (before is None or before.get("run_id") != after.get("run_id"))
        report.append({"stage": name, "ran": ran,
                       "wall_s": round(time.perf_counter() - start, 1),
                       "stage_s": after.get("wall_s") if after else None})
    return report


def sample_users(ws: ws_lib.Workspace, count: int) -> list[str]:
    """Users with the most reviews: their profiles say the most."""
    import pyarrow.parquet as pq

    users = pq.read_table(ws.features / "users.parquet", columns=["user", "n_reviews"]).to_pandas()
    users = users.sort_values(["n_reviews", "user"], ascending=[False, True])
    return list(users["user"][:count])


def print_report(report: list[dict]) -> None:
    print("\nStage timings (this run):")
    print(f"  {'stage':<18} {'status':<10} {'seconds':>8}")
    for row in report:
        status = "ran" if row["ran"] else "up to date"
        print(f"  {row['stage']:<18} {status:<10} {row['wall_s']:>8.1f}")
    print(f"  {'total':<18} {'':<10} {sum(r['wall_s'] for r in report):>8.1f}")


def run(args: argparse.Namespace, beam_args: list[str]) -> int:
    from pipelines.recommend import print_recommendations
    from pipelines.serve import start_server_process

    started = time.perf_counter()
    ws = ws_lib.workspace_from_args(args)
    from pipelines.run_chain import chosen_encoder

    encoder = chosen_encoder(args)
    log.info("demo: encoder %s", "ALBERT student of the packaged teacher" if encoder == "student"
             else "ALBERT pretrained from scratch")
    report = run_stages(args, beam_args, demo_stages(encoder))
    (ws.root / "demo_timings.json").write_text(json.dumps(report, indent=2) + "\n")
    print_report(report)

    server, base = start_server_process(ws.root, rest_port=args.port)
    try:
        for user in sample_users(ws, args.users):
            print_recommendations(base, user, args.k)
        print(f"\nThe server answers TF Serving's REST API at {base}, e.g.\n"
              f"  curl {base}/v1/models/recommender\n"
              f"  curl -d '{{\"instances\": [\"{sample_users(ws, 1)[0]}\"]}}' "
              f"{base}/v1/models/recommender:predict")
        print(f"The opinion report (sentiment, aspects and topics over time, pros and cons): "
              f"{ws.stage_dir('report') / 'report.html'}")
        print(f"Demo finished in {time.perf_counter() - started:.0f} s.")
        if args.serve:
            print("Serving until Ctrl-C ...")
            server.wait()
    except KeyboardInterrupt:
        pass
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
    return 0
