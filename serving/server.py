"""A local model server that speaks TF Serving's REST and gRPC APIs (`opinionrec serve`).

Stock `tensorflow_model_server` cannot run on every machine (no pip or Debian package ships it,
Docker may be missing), so this server loads the same model folder and answers the same API:
clients written against it work unchanged against real TF Serving. It holds one `ModelRegistry`
(the models of a `models.config`, or one `--model_name`/`--model_base_path` pair), answers REST
on one event loop thread (model calls on workers or in batches) and gRPC on a thread pool,
polls the model folders for new versions (and, if asked, its models.config for a changed model
list), and stops gracefully on SIGINT or SIGTERM: the listeners close at once, and the requests
already received, REST and gRPC, get up to `drain_seconds` to be answered.

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
import time
from concurrent import futures
from pathlib import Path
from typing import Any, Callable

from serving.metrics import ServingMetrics
from serving.models import ModelRegistry
from serving.http_server import RestServer, make_http_server
from serving.rest import DEFAULT_TIMEOUT_SECONDS, DEFAULT_WORKERS, RestApi

log = logging.getLogger("opinionrec.serving")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_REST_PORT = 8501
DEFAULT_GRPC_PORT = 8500
# No gRPC message size limit, as TF Serving (requests and responses of batched tensors are large).
GRPC_MESSAGE_OPTIONS = [("grpc.max_send_message_length", -1),
                        ("grpc.max_receive_message_length", -1)]
# Seconds in-flight requests get to finish on stop (TF Serving has no graceful shutdown to copy).
DEFAULT_DRAIN_SECONDS = 10.0
# Longest delay between a signal and its handler (see `serve_until_signal`).
_SIGNAL_CHECK_SECONDS = 0.2


class ModelServer:
    """REST and gRPC front ends over a `ModelRegistry`.

    Args:
        registry: the models to serve; `start()` loads them.
        host: address to bind (loopback by default: expose deliberately).
        rest_port: REST port; 0 picks a free one; None disables REST.
        grpc_port: gRPC port; 0 picks a free one; None disables gRPC.
        poll_seconds: how often to look for new versions on disk; 0 disables polling.
        grpc_workers: threads answering gRPC calls.
        rest_workers: threads running the model calls of REST requests whose signature does not
            batch (the others wait their turn); every connection is read and answered by one
            event loop thread.
        rest_timeout_seconds: a REST request not answered in this time gets a 504; None: no
            deadline.
        drain_seconds: how long `stop()` waits for the requests already received (REST and gRPC
            together) before it returns.
        config_poll_seconds: how often to re-read the registry's models.config and apply a changed
            model list (TF Serving's --model_config_file_poll_wait_seconds); 0 disables it.
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
        drain_seconds: float = DEFAULT_DRAIN_SECONDS,
        config_poll_seconds: float = 0.0,
    ) -> None:
        if rest_port is None and grpc_port is None:
            raise ValueError("Enable REST or gRPC: both `rest_port` and `grpc_port` are None.")
        if config_poll_seconds > 0 and registry.config_path is None:
            raise ValueError("`config_poll_seconds` needs a registry made from a models.config. "
                             f"Received: config_poll_seconds={config_poll_seconds}")
        self.registry = registry
        self.metrics = ServingMetrics()  # REST and gRPC requests alike
        self.host = host
        self._rest_port, self._grpc_port = rest_port, grpc_port
        self._poll_seconds = poll_seconds
        self._grpc_workers = grpc_workers
        self._rest_workers, self._rest_timeout = rest_workers, rest_timeout_seconds
        self._drain_seconds, self._config_poll_seconds = drain_seconds, config_poll_seconds
        self._rest_api: RestApi | None = None
        self._http: RestServer | None = None
        self._grpc: Any = None
        self._grpc_calls: Any = None  # the gRPC server's CallCounter
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
        if self._config_poll_seconds > 0:
            self._spawn("config-poll", self._poll_config)
        log.info("ready: REST %s, gRPC %s; models %s", self.rest_url or "off",
                 self.grpc_target or "off", self.registry.available())
        return self

    def _start_grpc(self) -> None:
        import grpc

        from serving.grpc_service import CallCounter, add_services

        self._grpc_calls = CallCounter()
        self._grpc = grpc.server(
            futures.ThreadPoolExecutor(max_workers=self._grpc_workers),
            interceptors=[self._grpc_calls],
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

    def _poll_config(self) -> None:
        while not self._stopping.wait(self._config_poll_seconds):
            try:
                self.registry.reload_config_file()
            except Exception:  # noqa: BLE001  a failed reload must not stop the poller
                log.exception("reloading %s failed", self.registry.config_path)

    def in_flight(self) -> int:
        """Requests received and not yet answered, REST and gRPC."""
        rest = self._http.in_flight() if self._http is not None else 0
        return rest + (self._grpc_calls.active if self._grpc_calls is not None else 0)

    def stop(self, grace: float | None = None) -> None:
        """Stop gracefully: close the listeners (new connections are refused, new gRPC calls get
        UNAVAILABLE), then give the requests already received up to `grace` seconds (default
        `drain_seconds`), REST and gRPC at once, to be answered; idle connections are closed."""
        grace = self._drain_seconds if grace is None else grace
        deadline = time.monotonic() + grace
        self._stopping.set()
        grpc_stopped = self._grpc.stop(grace) if self._grpc is not None else None
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()  # the listening socket only: connections stay open
        in_flight = self.in_flight()
        if in_flight:
            log.info("draining %d in-flight requests (at most %g s)", in_flight, grace)
        unanswered = 0
        if self._http is not None:
            unanswered = self._http.drain(_left(deadline))
            if unanswered:
                log.warning("%d REST requests still unanswered after %g s", unanswered, grace)
            self._http = None
        if self._rest_api is not None:
            self._rest_api.close()
            self._rest_api = None
        if grpc_stopped is not None:
            grpc_stopped.wait(_left(deadline) + 1)
            self._grpc = None
        for thread in self._threads:
            if unanswered and thread.name == "serving-rest":
                continue  # a daemon: it answers the requests still running, then ends
            thread.join(timeout=_left(deadline) + 1)
        self._threads.clear()
        log.info("stopped")

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
            # Woken up now and then: Python runs signal handlers in the main thread only, and a
            # signal the kernel gave to another thread (TensorFlow's, gRPC's) does not interrupt
            # an endless wait here.
            while not stop.wait(_SIGNAL_CHECK_SECONDS):
                pass
            log.info("stopping")
        finally:
            for sig, handler in previous.items():  # a second signal does not wait for the drain
                signal.signal(sig, handler)
            self.stop()

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


def _left(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())


def _host_for_url(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
