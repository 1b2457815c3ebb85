"""`opinionrec serve`: serve the exported models over TF Serving's REST and gRPC APIs.

Serves `<workspace>/export/models/models.config` by default (or `--models-config`, or one
`--model-name`/`--model-base-path` pair, as `tensorflow_model_server` takes them), on 127.0.0.1
unless `--host` says otherwise, until SIGINT/SIGTERM, after which the requests already received get
`--drain-seconds` to be answered. Port 0 turns a front end off, as in TF Serving; `auto` picks a
free port (see `--port-file`).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from pipelines import workspace as ws_lib

if TYPE_CHECKING:
    import subprocess

    from serving.server import ModelServer

log = logging.getLogger("opinionrec")


def _port(text: str) -> int | None:
    """`8501` -> 8501, `0` -> None (off, as TF Serving), `auto` -> 0 (a free port)."""
    if text == "auto":
        return 0
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a port number or 'auto', got {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range: {port}")
    return port or None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    ws_lib.add_workspace_argument(parser, stage=False)
    parser.add_argument("--models-config", "--model_config_file", dest="models_config",
                        help="ModelServerConfig file (default: WORKSPACE/export/models/"
                             "models.config)")
    parser.add_argument("--model-name", "--model_name", dest="model_name",
                        help="serve one model under this name (with --model-base-path)")
    parser.add_argument("--model-base-path", "--model_base_path", dest="model_base_path",
                        help="folder of integer version folders of the one model to serve")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default: %(default)s; 0.0.0.0 exposes the server)")
    parser.add_argument("--rest-port", "--rest_api_port", dest="rest_port", type=_port,
                        default=8501, help="REST port, 0 = off, auto = free (default: 8501)")
    parser.add_argument("--grpc-port", dest="grpc_port", type=_port, default=8500,
                        help="gRPC port, 0 = off, auto = free (default: 8500)")
    parser.add_argument("--poll-seconds", "--file_system_poll_wait_seconds", dest="poll_seconds",
                        type=float, default=1.0,
                        help="how often to look for new model versions; 0 = never (default: 1)")
    parser.add_argument("--model-config-file-poll-wait-seconds",
                        "--model_config_file_poll_wait_seconds", dest="config_poll_seconds",
                        type=float, default=0.0,
                        help="how often to re-read the models.config and serve its changed model "
                        "list (added, removed, changed models); 0 = never (default: 0, as TF "
                        "Serving)")
    parser.add_argument("--max-num-load-retries", "--max_num_load_retries",
                        dest="max_load_retries", type=int, default=5,
                        help="times a version that failed to load is tried again (default: 5); "
                             "a version whose folder changed since (a copy still running) "
                             "starts afresh")
    parser.add_argument("--load-retry-interval-seconds", dest="load_retry_interval",
                        type=float, default=60.0,
                        help="seconds between those tries (default: 60)")
    parser.add_argument("--rest-api-timeout-ms", "--rest_api_timeout_in_ms",
                        dest="rest_timeout_ms", type=int, default=30000,
                        help="a REST request not answered in this time gets a 504; 0 = no "
                        "deadline (default: 30000, as TF Serving)")
    parser.add_argument("--rest-workers", type=int, default=8,
                        help="threads running REST model calls at once, for signatures that do not "
                        "batch (default: 8)")
    parser.add_argument("--drain-seconds", type=float, default=10.0,
                        help="on SIGTERM or SIGINT, stop accepting and give the requests already "
                        "received this long to be answered (default: 10; TF Serving has no "
                        "such setting: it does not drain on SIGTERM)")
    parser.add_argument("--enable-batching", "--enable_batching", dest="enable_batching",
                        action="store_true",
                        help="merge concurrent requests to a signature into one model call, as "
                        "TF Serving's --enable_batching (for signatures that batch)")
    parser.add_argument("--batching-parameters-file", "--batching_parameters_file",
                        dest="batching_parameters_file",
                        help="BatchingParameters text file (default with --enable-batching: "
                        "batching.config beside models.config, else TF Serving's defaults)")
    parser.add_argument("--port-file",
                        help="write the bound ports as JSON here once the server is ready")


def _batching_options(args: argparse.Namespace):
    """The server's BatchingOptions: None without --enable-batching."""
    from serving.layout import BATCHING_CONFIG, BatchingOptions, read_batching_config

    if not args.enable_batching:
        if args.batching_parameters_file:
            raise SystemExit("serve: --batching-parameters-file needs --enable-batching")
        return None
    path = args.batching_parameters_file
    if path is None and not args.model_base_path:
        beside = Path(args.models_config or ws_lib.workspace_from_args(args).models_root
                      / "models.config").parent / BATCHING_CONFIG
        path = beside if beside.exists() else None
    options = read_batching_config(path) if path else BatchingOptions()
    log.info("serve: batching on (%s): %s", path or "defaults", options)
    return options


def run(args: argparse.Namespace, beam_args: list[str]) -> int:
    from serving.models import ModelRegistry

    retries = {"max_load_retries": args.max_load_retries,
               "load_retry_interval": args.load_retry_interval,
               "batching": _batching_options(args)}
    if args.model_base_path or args.model_name:
        if not (args.model_base_path and args.model_name):
            raise SystemExit("serve: give --model-name and --model-base-path together")
        if args.config_poll_seconds:
            raise SystemExit("serve: --model-config-file-poll-wait-seconds needs a models.config, "
                             "not --model-base-path")
        registry = ModelRegistry.from_base_path(args.model_name, args.model_base_path,
                                                **retries)
    else:
        workspace = ws_lib.workspace_from_args(args)
        config = Path(args.models_config or workspace.models_root / "models.config")
        if not config.exists():
            raise SystemExit(f"serve: {config} not found; run `opinionrec export` first")
        try:
            registry = ModelRegistry.from_config_file(config, **retries)
        except ValueError as error:
            raise SystemExit(f"serve: {error}") from None
    if args.rest_port is None and args.grpc_port is None:
        raise SystemExit("serve: both REST and gRPC are off; give --rest-port or --grpc-port")

    from serving.server import ModelServer

    server = ModelServer(registry, host=args.host, rest_port=args.rest_port,
                         grpc_port=args.grpc_port, poll_seconds=args.poll_seconds,
                         rest_workers=args.rest_workers,
                         rest_timeout_seconds=args.rest_timeout_ms / 1000 or None,
                         drain_seconds=args.drain_seconds,
                         config_poll_seconds=args.config_poll_seconds)
    try:
        server.serve_until_signal(port_file=args.port_file, on_ready=_print_usage)
    except OSError as error:  # e.g. the port is taken
        raise SystemExit(f"serve: cannot listen on {args.host}: {error}") from None
    return 0


def _print_usage(server: ModelServer) -> None:
    """What answers where, and curl lines to try it."""
    available = server.registry.available()
    print("Models: " + ", ".join(f"{name} (versions {versions or 'none yet'})"
                                 for name, versions in available.items()))
    if server.rest_url:
        base = server.rest_url
        print(f"REST  {base}/v1/models/<name>[/versions/<v>][/metadata|:predict], e.g.")
        for name in available:
            print(f"  curl {base}/v1/models/{name}/metadata")
        if "text_features" in available:
            print(f"  curl -d '{{\"instances\": [\"Great battery, poor sound.\"]}}' "
                  f"{base}/v1/models/text_features:predict")
    if server.grpc_target:
        print(f"gRPC  {server.grpc_target}  (tensorflow.serving.PredictionService, ModelService)")
    print("Ctrl-C stops the server.", flush=True)


def start_server_process(
    workspace_dir: str | Path, rest_port: int | str = "auto", timeout_s: float = 180.0,
    models: tuple[str, ...] = ("recommender",),
) -> tuple["subprocess.Popen[bytes]", str]:
    """`opinionrec serve` in a child process (REST only); returns it and its base URL once every
    model in `models` is AVAILABLE. The caller stops it (SIGINT) when done."""
    import subprocess
    import sys
    import tempfile
    import time
    import urllib.request

    port_file = Path(tempfile.mkdtemp(prefix="opinionrec-serve-")) / "ports.json"
    process = subprocess.Popen([
        sys.executable, "-m", "pipelines.cli", "serve", "--workspace", str(workspace_dir),
        "--rest-port", str(rest_port), "--grpc-port", "0", "--port-file", str(port_file),
    ])
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with code {process.returncode}")
        if port_file.exists():
            base = json.loads(port_file.read_text())["rest_url"]
            try:
                if all(b"AVAILABLE" in urllib.request.urlopen(
                        f"{base}/v1/models/{name}", timeout=5).read() for name in models):
                    return process, base
            except OSError:
                pass
        time.sleep(0.3)
    process.terminate()
    raise RuntimeError(f"the server did not answer within {timeout_s:.0f} s")
