"""Serving latency and throughput: in-process calls, REST and gRPC, batching off and on.

Side by side in one run, on an exported workspace (`WS/export/models`): the model's signature
called in this process from N threads ("in-process"), the server's own model call without HTTP
("in-process, server's call": request checks, its call path, numpy out), then the same requests
through `opinionrec serve` (a separate process, as deployed) over REST (keep-alive; the stdlib
`http.client`, and a raw-socket client that spends far less of the shared CPU) and gRPC, with
server-side batching off and on (`--enable-batching`), at 1, 8 and 32 concurrent clients, for
the recommender (one user per request) and text_features (one text per request, and 32 texts
per request). Each cell runs `--seconds` after a warm-up; the table gives p50/p95/p99 latency,
requests/s and texts/s.

    python benchmarks/serving.py --workspace WS                 # ~15 minutes on 2 cores
    python benchmarks/serving.py --workspace WS --clients 1 8 --seconds 3 \\
        --workloads "recommender, 1 user" --variants in-process REST --output serving_quick

Writes benchmarks/results/serving.{json,md,png} (or `--output`'s name).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import RESULTS, markdown_table, write_results  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)


def workspace_workloads(workspace_dir: Path) -> tuple[Path, dict[str, dict]]:
    """The workspace's exported models folder, and what each workload sends from its ingested
    documents: the model, its input, the items sent (users or texts) and the rows per request."""
    from pipelines.corpus import read_docs
    from pipelines.workspace import Workspace

    workspace = Workspace(Path(workspace_dir))
    docs = read_docs(workspace.docs, kinds=["review", "news"], columns=["text", "user"])
    texts = [t for t in docs["text"].tolist() if isinstance(t, str) and t.strip()][:2000]
    users = sorted({u for u in docs["user"].dropna().tolist() if u})[:500]
    return workspace.models_root, _requests(texts, users)


def _requests(docs_texts: list[str], users: list[str]) -> dict[str, dict]:
    """What each workload sends (model, input name, items, rows per request)."""
    return {
        "recommender, 1 user": {"model": "recommender", "rows": 1,
                                "items": users, "input": "user_id"},
        "text_features, 1 text": {"model": "text_features", "rows": 1,
                                  "items": docs_texts, "input": "text"},
        "text_features, 32 texts": {"model": "text_features", "rows": 32,
                                    "items": docs_texts, "input": "text"},
    }


def _batch(workload: dict, i: int) -> list[str]:
    items, rows = workload["items"], workload["rows"]
    return [items[(i * rows + j) % len(items)] for j in range(rows)]


def _percentiles(latencies: list[float]) -> dict[str, float]:
    import numpy as np

    ms = np.asarray(latencies) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)),
            "p99_ms": float(np.percentile(ms, 99))}


def cpu_seconds(pid: int | str = "self") -> float:
    """CPU time (user + system) a process has used so far, from /proc (10 ms ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_clients(call, workload: dict, clients: int, seconds: float,
                server_pid: int | None = None) -> dict:
    """`clients` threads calling `call(k, texts)` back to back for `seconds` (then waiting for
    the calls in flight), after each client made one untimed call (tracing, connections).

    Besides latency and throughput, the CPU time per request of this process (the clients, and
    the model itself when it runs in process) and of the server's: where the shared cores go."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    failures = [0] * clients
    errors: list[str] = []
    for k in range(clients):
        call(k, _batch(workload, k))  # warm-up; a failure here is the benchmark's to report
    cpu_at = (cpu_seconds(), cpu_seconds(server_pid) if server_pid else 0.0)
    start_at = time.perf_counter()
    stop_at = start_at + seconds

    def client(k: int) -> None:
        i = k
        while (now := time.perf_counter()) < stop_at:
            texts = _batch(workload, i)
            i += clients
            try:
                call(k, texts)
            except Exception as error:  # noqa: BLE001  counted, never fatal to the benchmark
                failures[k] += 1
                errors.append(f"{type(error).__name__}: {error}"[:200])
                continue
            latencies[k].append(time.perf_counter() - now)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Over the time until the last request came back, not `seconds`: requests started before
    # `stop_at` may take far longer than it (32 texts x 32 clients: ~30 s), and dividing by
    # `seconds` counted them as if answered within it.
    elapsed = time.perf_counter() - start_at
    client_cpu = cpu_seconds() - cpu_at[0]
    server_cpu = cpu_seconds(server_pid) - cpu_at[1] if server_pid else None
    flat = [x for per_client in latencies for x in per_client]
    requests_per_second = len(flat) / elapsed
    per_request = 1000 / max(len(flat), 1)
    if errors:
        print(f"  {len(errors)} failed requests, e.g. {errors[0]}", flush=True)
    return {"requests": len(flat), "failed": sum(failures), "elapsed_s": elapsed,
            "requests_per_second": requests_per_second,
            "texts_per_second": requests_per_second * workload["rows"],
            "client_cpu_ms_per_request": client_cpu * per_request,
            "server_cpu_ms_per_request": None if server_cpu is None else server_cpu * per_request,
            **_percentiles(flat)}


def in_process_caller(models_root: Path, model: str, input_name: str):
    import tensorflow as tf
    import tensorflow_text  # noqa: F401

    signature = tf.saved_model.load(str(_newest_version(models_root, model)[1])).signatures[
        "serving_default"]

    def call(_: int, texts: list[str]):
        return {k: v.numpy() for k, v in signature(**{input_name: tf.constant(texts)}).items()}

    return call


def _newest_version(models_root: Path, model: str) -> tuple[int, Path]:
    """The newest version of an exported model: its number and folder."""
    from serving.layout import version_dirs

    folders = version_dirs(models_root / model)
    return max(folders), folders[max(folders)]


def servable_caller(models_root: Path, model: str, input_name: str):
    """The server's own model call (`serving.models.Servable.predict`: request checks, the
    signature through the server's call path, numpy out), in this process: REST minus HTTP."""
    import numpy as np

    from serving.models import Servable

    servable = Servable(model, *_newest_version(models_root, model))

    def call(_: int, texts: list[str]):
        return servable.predict("", {input_name: np.array(texts, dtype=object)})

    return call


def rest_caller(url: str, model: str, input_name: str, clients: int):
    host, port = url.removeprefix("http://").rsplit(":", 1)
    connections = [http.client.HTTPConnection(host, int(port), timeout=60) for _ in range(clients)]

    def call(k: int, texts: list[str]):
        body = json.dumps({"inputs": {input_name: texts}})
        connections[k].request("POST", f"/v1/models/{model}:predict", body,
                               {"Content-Type": "application/json"})
        response = connections[k].getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"{response.status}: {data[:200]!r}")
        return data

    return call


def raw_rest_caller(url: str, model: str, input_name: str, clients: int):
    """The same keep-alive REST requests over plain sockets: the request written by hand in one
    send, the reply read by its Content-Length. It costs the client a fraction of `http.client`'s
    CPU, which on a 2-core machine shared with the server is CPU taken from the server: closer
    to a load generator on another machine, as serving benchmarks use."""
    import socket

    host, port = url.removeprefix("http://").rsplit(":", 1)
    sockets = []
    for _ in range(clients):
        connection = socket.create_connection((host, int(port)), timeout=60)
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sockets.append(connection)
    buffers = [bytearray() for _ in range(clients)]
    head = (f"POST /v1/models/{model}:predict HTTP/1.1\r\nHost: {host}\r\n"
            "Content-Type: application/json\r\nContent-Length: ").encode()

    def receive(k: int) -> None:
        chunk = sockets[k].recv(1 << 16)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        buffers[k] += chunk

    def call(k: int, texts: list[str]):
        body = json.dumps({"inputs": {input_name: texts}}).encode()
        sockets[k].sendall(head + str(len(body)).encode() + b"\r\n\r\n" + body)
        buffer = buffers[k]
        while (end := buffer.find(b"\r\n\r\n")) < 0:
            receive(k)
        header = bytes(buffer[:end])
        total = end + 4 + int(_CONTENT_LENGTH.search(header).group(1))
        while len(buffer) < total:
            receive(k)
        data = bytes(buffer[end + 4:total])
        del buffer[:total]
        if not header.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"{header[9:12].decode()}: {data[:200]!r}")
        return data

    return call


def grpc_caller(target: str, model: str, input_name: str, clients: int):
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    channels = [grpc.insecure_channel(target) for _ in range(clients)]
    stubs = [prediction_service_pb2_grpc.PredictionServiceStub(c) for c in channels]

    def call(k: int, texts: list[str]):
        request = predict_pb2.PredictRequest()
        request.model_spec.name = model
        request.inputs[input_name].CopyFrom(tf.make_tensor_proto(texts))
        return stubs[k].Predict(request, timeout=60)

    return call


# Variant name -> how its clients call: in this process, or the server over a protocol.
IN_PROCESS_CALLERS = {"in-process": in_process_caller, "in-process, server's call": servable_caller}
SERVER_CALLERS = {"REST": (rest_caller, "rest_url"),
                  "REST, raw client": (raw_rest_caller, "rest_url"),
                  "gRPC": (grpc_caller, "grpc_target")}
VARIANTS = [*IN_PROCESS_CALLERS, *(protocol + suffix for suffix in ("", ", batching")
                                   for protocol in SERVER_CALLERS)]
WORKLOADS = list(_requests([], []))


def connect_burst(url: str, clients: int = 200) -> dict:
    """`clients` threads opening a connection to the REST port at the same moment, each then
    asking the model status: how long the slowest connect took, and how many failed."""
    import socket

    host, port = url.removeprefix("http://").rsplit(":", 1)
    barrier = threading.Barrier(clients)
    connect_seconds: list[float] = []
    failures = []

    def one() -> None:
        barrier.wait()
        start = time.perf_counter()
        try:
            with socket.create_connection((host, int(port)), timeout=60) as connection:
                connect_seconds.append(time.perf_counter() - start)
                connection.sendall(b"GET /v1/models/recommender HTTP/1.1\r\nHost: x\r\n"
                                   b"Connection: close\r\n\r\n")
                if not connection.recv(12).startswith(b"HTTP/1."):
                    failures.append("no HTTP answer")
        except OSError as error:
            failures.append(str(error))

    threads = [threading.Thread(target=one) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"clients": clients, "connected": len(connect_seconds), "failed": len(failures),
            "slowest_connect_s": max(connect_seconds, default=float("nan"))}


def start_server(models_root: Path, batching: bool, work: Path, extra: list[str] = (),
                 checkout: Path = REPO, name: str = "") -> tuple[subprocess.Popen, dict]:
    """`opinionrec serve` from `checkout` (its code on PYTHONPATH) in its own process, once it
    listens: the process and its ports."""
    name = name or f"server-{int(batching)}"
    port_file = work / f"{name}.json"
    port_file.unlink(missing_ok=True)
    command = [sys.executable, "-m", "pipelines.cli", "serve",
               "--models-config", str(models_root / "models.config"),
               "--rest-port", "auto", "--grpc-port", "auto", "--poll-seconds", "0",
               "--port-file", str(port_file)]
    if batching:
        command.append("--enable-batching")
    command += extra
    process = subprocess.Popen(command, cwd=checkout, stdout=subprocess.DEVNULL,
                               stderr=open(work / f"{name}.log", "w"),
                               env={**os.environ, "PYTHONPATH": str(checkout)})
    deadline = time.monotonic() + 180
    while not port_file.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the server did not start; see {work}/{name}.log")
        time.sleep(0.5)
    return process, json.loads(port_file.read_text())


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    workloads = sorted({r["workload"] for r in results})
    fig, axes = plt.subplots(1, len(workloads), figsize=(5 * len(workloads), 4), squeeze=False)
    for ax, workload in zip(axes[0], workloads):
        for variant in sorted({r["variant"] for r in results}):
            rows = sorted((r for r in results if r["workload"] == workload
                           and r["variant"] == variant), key=lambda r: r["clients"])
            if rows:
                ax.plot([r["clients"] for r in rows], [r["p50_ms"] for r in rows], marker="o",
                        label=variant)
        ax.set(title=workload, xlabel="concurrent clients", ylabel="p50 latency (ms)",
               xscale="log", yscale="log")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


_SUMMED = ("p50_ms", "p95_ms", "p99_ms", "requests_per_second", "texts_per_second",
           "client_cpu_ms_per_request", "server_cpu_ms_per_request")


def summarise_rounds(rounds: list[dict]) -> list[dict]:
    """One row per (workload, variant, clients): the median of each figure over the rounds,
    the failures summed, and p50 latency and requests/s as ratios to the in-process call of
    the same round (then their median)."""
    import statistics

    in_process = {(r["workload"], r["clients"], r["round"]): r for r in rounds
                  if r["variant"] == "in-process"}
    cells: dict[tuple, list[dict]] = {}
    for row in rounds:
        cells.setdefault((row["workload"], row["variant"], row["clients"]), []).append(row)
    summary = []
    for (workload, variant, clients), rows in cells.items():
        row = {"workload": workload, "variant": variant, "clients": clients,
               "rounds": len(rows), "requests": sum(r["requests"] for r in rows),
               "failed": sum(r["failed"] for r in rows)}
        for name in _SUMMED:
            values = [r[name] for r in rows if r[name] is not None]
            row[name] = statistics.median(values) if values else None
        pairs = [(r, in_process.get((workload, clients, r["round"]))) for r in rows]
        pairs = [(r, base) for r, base in pairs if base is not None]
        row["p50_vs_in_process"] = (statistics.median(r["p50_ms"] / b["p50_ms"]
                                                      for r, b in pairs) if pairs else None)
        row["throughput_vs_in_process"] = (statistics.median(
            r["requests_per_second"] / b["requests_per_second"] for r, b in pairs)
            if pairs else None)
        summary.append(row)
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", type=Path, required=True,
                        help="a workspace after `export` (WS/export/models)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--seconds", type=float, default=4.0, help="measured time per cell")
    parser.add_argument("--rounds", type=int, default=1,
                        help="measure every cell this many times, the variants interleaved; "
                        "the table gives medians (default 1)")
    parser.add_argument("--variants", nargs="+", default=VARIANTS, choices=VARIANTS,
                        metavar="VARIANT", help=f"which to run (default: all of {VARIANTS})")
    parser.add_argument("--server-args", default="",
                        help="more `opinionrec serve` arguments, e.g. "
                        "'--batching-parameters-file other.config'")
    parser.add_argument("--output", default="serving",
                        help="results name under benchmarks/results (default: serving; give "
                        "another for a partial run, so the full table stays)")
    parser.add_argument("--workloads", nargs="+", default=WORKLOADS, choices=WORKLOADS,
                        metavar="WORKLOAD", help=f"which to run (default: all of {WORKLOADS})")
    args = parser.parse_args(argv)

    models_root, all_workloads = workspace_workloads(args.workspace)
    workloads = {name: workload for name, workload in all_workloads.items()
                 if name in args.workloads}
    burst: dict = {}

    def measure(variant: str, make_call, clients: int, name: str, workload: dict,
                server_pid: int | None = None) -> dict:
        row = run_clients(make_call(clients), workload, clients, args.seconds, server_pid)
        row.update(variant=variant, workload=name, clients=clients)
        print(f"{name:26s} {variant:22s} {clients:3d} clients: p50 {row['p50_ms']:7.2f} ms, "
              f"{row['requests_per_second']:7.1f} req/s, {row['texts_per_second']:7.1f} texts/s"
              f", CPU ms/request client {row['client_cpu_ms_per_request']:.2f}"
              + ("" if row['server_cpu_ms_per_request'] is None
                 else f" server {row['server_cpu_ms_per_request']:.2f}")
              + (f", {row['failed']} failed" if row['failed'] else ""), flush=True)
        return row

    variants = [v for v in VARIANTS if v in set(args.variants)]
    in_process_calls: dict[tuple[str, str], object] = {}  # (variant, workload) -> call
    servers: dict[bool, tuple[subprocess.Popen, dict]] = {}  # batching -> (process, ports)
    rounds: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            # Both servers run throughout, idle while the other variants are measured, so that
            # each round measures every variant of a cell back to back: this machine's speed
            # drifts by tens of percent within minutes, and a ratio of two cells measured
            # minutes apart would carry that drift.
            for batching in (False, True):
                suffix = ", batching" if batching else ""
                if any(protocol + suffix in variants for protocol in SERVER_CALLERS):
                    servers[batching] = start_server(models_root, batching, Path(tmp),
                                                     shlex.split(args.server_args))
            if False in servers:
                burst = connect_burst(servers[False][1]["rest_url"])
                print(f"connect burst: {burst}", flush=True)
            for round_index in range(args.rounds):
                for name, workload in workloads.items():
                    model, input_name = workload["model"], workload["input"]
                    for clients in args.clients:
                        for variant in variants:
                            if variant in IN_PROCESS_CALLERS:
                                key = (variant, name)
                                if key not in in_process_calls:
                                    in_process_calls[key] = IN_PROCESS_CALLERS[variant](
                                        models_root, model, input_name)
                                make_call, pid = (lambda n, c=in_process_calls[key]: c), None
                            else:
                                protocol = variant.removesuffix(", batching")
                                process, ports = servers[variant.endswith(", batching")]
                                caller, address = SERVER_CALLERS[protocol]
                                make_call = (lambda n, c=caller, a=ports[address]: c(
                                    a, model, input_name, n))
                                pid = process.pid
                            row = measure(variant, make_call, clients, name, workload, pid)
                            rounds.append({**row, "round": round_index})
        finally:
            for process, _ in servers.values():
                process.terminate()
                process.wait(30)
    results = summarise_rounds(rounds)

    rows = [[r["workload"], r["variant"], r["clients"], f"{r['p50_ms']:.2f}",
             "" if r.get("p50_vs_in_process") is None else f"{r['p50_vs_in_process']:.2f}x",
             f"{r['p95_ms']:.2f}", f"{r['p99_ms']:.2f}", f"{r['requests_per_second']:.1f}",
             "" if r.get("throughput_vs_in_process") is None
             else f"{r['throughput_vs_in_process']:.0%}",
             f"{r['texts_per_second']:.1f}", f"{r['client_cpu_ms_per_request']:.2f}",
             "" if r["server_cpu_ms_per_request"] is None
             else f"{r['server_cpu_ms_per_request']:.2f}", r["failed"]] for r in results]
    table = markdown_table(["workload", "variant", "clients", "p50 ms", "p50 / in-process",
                            "p95 ms", "p99 ms", "requests/s", "requests/s / in-process",
                            "texts/s", "client CPU ms/request",
                            "server CPU ms/request", "failed"], rows)
    table += (f"\n\nMedians over {args.rounds} round(s), each measuring every variant of a cell "
              "back to back; the ratios to the in-process call (the signature called in this "
              "process, same clients) are taken within each round, then their median.")
    table += ("\n\nCPU ms/request: CPU time of the benchmark's process (its clients; the model "
              "too, in process) and of the server's, per request answered, on the 2 shared cores.")
    if burst:
        table += (f"\n\n{burst['clients']} clients connecting to the REST port at once: "
                  f"{burst['connected']} connected (slowest "
                  f"{burst['slowest_connect_s'] * 1000:.0f} ms), {burst['failed']} failed.")
    print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    plot(results, RESULTS / f"{args.output}.png")
    write_results(args.output, {"workspace": str(args.workspace), "seconds": args.seconds,
                              "rounds": args.rounds, "connect_burst": burst, "results": results,
                              "per_round": rounds},
                  table + f"\n\n![latency]({args.output}.png)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
