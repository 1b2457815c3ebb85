"""A local model server that speaks TF Serving's REST and gRPC APIs (`opinionrec serve`).

Stock `tensorflow_model_server` cannot run on every machine (no pip or Debian package ships it,
Docker may be missing), so this server loads the same model folder and answers the same API:
clients written against it work unchanged against real TF Serving. It holds one `ModelRegistry`
(the models of a `models.config`, or one `--model_name`/`--model_base_path` pair), answers REST
on a thread per connection and gRPC on a thread pool, polls the model folders for new versions,
and stops cleanly on SIGINT/SIGTERM.

Example:
    registry = ModelRegistry.from_config_file("workspace/export/models/models.config")
    with ModelServer(registry, rest_port=0, grpc_port=None) as server:
        print(server.rest_url)  # http://127.0.0.1:<free port>
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
from concurrent import futures
from pathlib import Path
from typing import Any, Callable

from serving.metrics import ServingMetrics
from serving.models import ModelRegistry
from serving.rest import (
    DEFAULT_TIMEOUT_SECONDS,
    DEFAULT_WORKERS,
    RestApi,
    RestServer,
    make_http_server,
)

log = logging.getLogger("opinionrec.serving")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_REST_PORT = 8501
DEFAULT_GRPC_PORT = 8500
# No gRPC message size limit, as TF Serving (requests and responses of batched tensors are large).
GRPC_MESSAGE_OPTIONS = [("grpc.max_send_message_length", -1),
                        ("grpc.max_receive_message_length", -1)]


class ModelServer:
    """REST and gRPC front ends over a `ModelRegistry`.

    Args:
        registry: the models to serve; `start()` loads them.
        host: address to bind (loopback by default: expose deliberately).
        rest_port: REST port; 0 picks a free one; None disables REST.
        grpc_port: gRPC port; 0 picks a free one; None disables gRPC.
        poll_seconds: how often to look for new versions on disk; 0 disables polling.
        grpc_workers: threads answering gRPC calls.
        rest_workers: threads answering REST requests (connections are read by their own).
        rest_timeout_seconds: a REST request not answered in this time gets a 504; None: no
            deadline.
    """

    def __init__(
        self,
        registry: ModelRegistry,
        *,
        host: str = DEFAULT_HOST,
        rest_port: int | None = DEFAULT_REST_PORT,
        grpc_port: int | None = DEFAULT_GRPC_PORT,
        poll_seconds: float = 1.0,
        grpc_workers: int = 8,
        rest_workers: int = DEFAULT_WORKERS,
        rest_timeout_seconds: float | None = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        if rest_port is None and grpc_port is None:
            raise ValueError("Enable REST or gRPC: both `rest_port` and `grpc_port` are None.")
        self.registry = registry
        self.metrics = ServingMetrics()  # REST and gRPC requests alike
        self.host = host
        self._rest_port, self._grpc_port = rest_port, grpc_port
        self._poll_seconds = poll_seconds
        self._grpc_workers = grpc_workers
        self._rest_workers, self._rest_timeout = rest_workers, rest_timeout_seconds
        self._rest_api: RestApi | None = None
        self._http: RestServer | None = None
        self._grpc: Any = None
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()

    # === Life cycle ===

    def start(self) -> "ModelServer":
        """Load the models, bind the ports and start answering (returns at once)."""
        self.registry.refresh()
        try:
            if self._rest_port is not None:
                self._rest_api = RestApi(self.registry, self.metrics, self._rest_workers,
                                         self._rest_timeout)
                self._http = make_http_server(self.host, self._rest_port, self._rest_api)
                self._rest_port = self._http.server_address[1]
                self._spawn("rest", self._http.serve_forever)
            if self._grpc_port is not None:
                self._start_grpc()
        except BaseException:
            self.stop()
            raise
        if self._poll_seconds > 0:
            self._spawn("poll", self._poll)
        log.info("ready: REST %s, gRPC %s; models %s", self.rest_url or "off",
                 self.grpc_target or "off", self.registry.available())
        return self

    def _start_grpc(self) -> None:
        import grpc

        from serving.grpc_service import add_services

        self._grpc = grpc.server(
            futures.ThreadPoolExecutor(max_workers=self._grpc_workers),
            options=GRPC_MESSAGE_OPTIONS,
        )
        add_services(self._grpc, self.registry, self.metrics)
        port = self._grpc.add_insecure_port(f"{_host_for_url(self.host)}:{self._grpc_port}")
        if not port:
            raise OSError(f"cannot bind gRPC to {self.host}:{self._grpc_port}")
        self._grpc_port = port
        self._grpc.start()

    def _spawn(self, name: str, target: Any) -> None:
        thread = threading.Thread(target=target, name=f"serving-{name}", daemon=True)
        thread.start()
        self._threads.append(thread)

    def _poll(self) -> None:
        while not self._stopping.wait(self._poll_seconds):
            try:
                self.registry.refresh()
            except Exception:  # noqa: BLE001  a bad folder must not stop the poller
                log.exception("refreshing the model folders failed")

    def stop(self, grace: float = 5.0) -> None:
        """Stop answering: in-flight gRPC calls get `grace` seconds; REST stops accepting."""
        self._stopping.set()
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        if self._rest_api is not None:
            self._rest_api.close()
            self._rest_api = None
        if self._grpc is not None:
            self._grpc.stop(grace).wait(grace + 1)
            self._grpc = None
        for thread in self._threads:
            thread.join(timeout=grace)
        self._threads.clear()

    def __enter__(self) -> "ModelServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def serve_until_signal(
        self,
        port_file: str | Path | None = None,
        on_ready: Callable[["ModelServer"], None] | None = None,
    ) -> None:
        """Start, call `on_ready(self)`, write `port_file` (JSON with the bound ports), block
        until SIGINT or SIGTERM, then stop cleanly. Call from the main thread."""
        stop = threading.Event()
        previous = {sig: signal.signal(sig, lambda *_: stop.set())
                    for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            self.start()
            if on_ready is not None:
                on_ready(self)
            if port_file:
                self.write_port_file(port_file)
            stop.wait()
            log.info("stopping")
        finally:
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    # === Addresses ===

    @property
    def rest_port(self) -> int | None:
        return self._rest_port if self._http is not None else None

    @property
    def grpc_port(self) -> int | None:
        return self._grpc_port if self._grpc is not None else None

    @property
    def rest_url(self) -> str | None:
        port = self.rest_port
        return f"http://{_host_for_url(self.host)}:{port}" if port else None

    @property
    def grpc_target(self) -> str | None:
        port = self.grpc_port
        return f"{_host_for_url(self.host)}:{port}" if port else None

    def write_port_file(self, path: str | Path) -> Path:
        """Write `{"rest_port", "grpc_port", "rest_url", "grpc_target", "pid"}` atomically."""
        path = Path(path)
        temporary = path.with_name(f".{path.name}.tmp")
        temporary.write_text(json.dumps({
            "rest_port": self.rest_port, "grpc_port": self.grpc_port, "rest_url": self.rest_url,
            "grpc_target": self.grpc_target, "pid": os.getpid(),
        }) + "\n")
        temporary.replace(path)
        return path


def _host_for_url(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
