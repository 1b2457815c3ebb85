"""The REST server of two (or more) checkouts of this project, side by side, interleaved.

For changes to the server itself: each checkout's `opinionrec serve` runs at once (idle while the
others are measured) against the same exported models, and every round measures the in-process
call and each server back to back at 1 and 8 clients (recommender, one user per request, the
raw-socket client), so that the machine's drifting speed cancels out of the ratios.

    git worktree add /tmp/before <commit>
    python benchmarks/serving_checkouts.py --workspace WS before=/tmp/before after=. \\
        [--server-args=--enable-batching] [--rounds 4] [--seconds 1.5]

Writes benchmarks/results/serving_checkouts.{json,md} (or `--output`'s name).
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import markdown_table, write_results  # noqa: E402
from benchmarks.serving import (  # noqa: E402
    in_process_caller,
    raw_rest_caller,
    run_clients,
    start_server,
    summarise_rounds,
    workspace_workloads,
)

WORKLOAD = "recommender, 1 user"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", type=Path, required=True,
                        help="a workspace after `export` (WS/export/models)")
    parser.add_argument("checkouts", nargs="+", metavar="NAME=PATH",
                        help="a name and a checkout of this project")
    parser.add_argument("--server-args", default="", help="more `opinionrec serve` arguments")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=1.5, help="measured time per cell")
    parser.add_argument("--output", default="serving_checkouts")
    args = parser.parse_args(argv)

    models_root, workloads = workspace_workloads(args.workspace)
    workload = workloads[WORKLOAD]
    checkouts = dict(item.split("=", 1) for item in args.checkouts)
    in_process = in_process_caller(models_root, "recommender", "user_id")
    rounds: list[dict] = []
    servers: dict[str, tuple[subprocess.Popen, str]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        try:
            for name, path in checkouts.items():
                process, ports = start_server(models_root, False, Path(tmp),
                                              shlex.split(args.server_args),
                                              checkout=Path(path).resolve(), name=name)
                servers[name] = process, ports["rest_url"]
            for round_index in range(args.rounds):
                for clients in args.clients:
                    cells = [("in-process", lambda n: in_process, None)] + [
                        (name, lambda n, url=url: raw_rest_caller(url, "recommender", "user_id",
                                                                  n), process.pid)
                        for name, (process, url) in servers.items()]
                    for variant, make_call, pid in cells:
                        row = run_clients(make_call(clients), workload, clients, args.seconds, pid)
                        row.update(workload=WORKLOAD, variant=variant, clients=clients,
                                   round=round_index)
                        rounds.append(row)
                        print(f"round {round_index} {variant:12s} {clients} clients: p50 "
                              f"{row['p50_ms']:.2f} ms, {row['requests_per_second']:.0f} req/s",
                              flush=True)
        finally:
            for process, _ in servers.values():
                process.terminate()
                process.wait(30)
    results = summarise_rounds(rounds)
    table = markdown_table(
        ["server", "clients", "p50 ms", "p50 / in-process", "requests/s",
         "requests/s / in-process", "server CPU ms/request", "failed"],
        [[r["variant"], r["clients"], f"{r['p50_ms']:.3f}",
          f"{r['p50_vs_in_process']:.2f}x", f"{r['requests_per_second']:.0f}",
          f"{r['throughput_vs_in_process']:.0%}",
          "" if r["server_cpu_ms_per_request"] is None
          else f"{r['server_cpu_ms_per_request']:.2f}", r["failed"]]
         for r in sorted(results, key=lambda r: (r["clients"], r["variant"] != "in-process"))])
    table += (f"\n\n{WORKLOAD} per request, raw-socket REST client; medians over {args.rounds} "
              f"rounds of {args.seconds:g} s cells, every server and the in-process call back "
              "to back in each round, ratios taken within a round. Checkouts: "
              + ", ".join(f"{name} = {path}" for name, path in checkouts.items())
              + (f"; server arguments `{args.server_args}`" if args.server_args else "") + ".")
    print(table)
    write_results(args.output, {"workspace": str(args.workspace), "checkouts": checkouts,
                                "server_args": args.server_args, "rounds": args.rounds,
                                "seconds": args.seconds, "results": results,
                                "per_round": rounds}, table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
