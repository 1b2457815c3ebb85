"""TF Serving's REST API over a `ModelRegistry`, and a threaded stdlib HTTP server for it.

Routing, status codes and bodies follow tensorflow/serving `model_servers/http_rest_api_handler.cc`
and `http_rest_api_util.cc` (same path regexes, case-insensitive; model names and labels
URL-decoded; `{"error": "..."}` with the HTTP status of the canonical error code):

    GET  /v1/models/{name}[/versions/{v}|/labels/{l}]            model status
    GET  /v1/models/{name}[/versions/{v}|/labels/{l}]/metadata   signature defs
    POST /v1/models/{name}[/versions/{v}|/labels/{l}]:predict    predict (row or columnar JSON)
    POST ...:classify, ...:regress                               501 here (tf.Example APIs)
    GET  /monitoring/prometheus/metrics                          request counts and latencies

Any other method is a 400 "Malformed request"; a body over `MAX_BODY_BYTES` a 413.

`RestApi.handle` is a pure function of (method, path, body), so it is tested without sockets;
`make_http_server` puts it behind `ThreadingHTTPServer` (a thread per connection reads requests,
HTTP/1.1 keep-alive; a bounded number are answered at once, on the connection's thread when a
slot is free, else by a pool of workers, within a deadline) and logs one line per request.
`RestServer.drain` lets the requests being answered finish after the listener is closed (each
answered with `Connection: close`) and closes idle keep-alive connections.
"""

from __future__ import annotations

import collections
import functools
import io
import json
import logging
import re
import socket
import sys
import threading
import time
import traceback
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import unquote, urlsplit

from serving.json_tensor import (
    parse_json_body,
    predict_inputs_from_json,
    predict_response_json,
    signature_name_of,
)
from serving.metrics import CONTENT_TYPE, METRICS_PATH, ServingMetrics
from serving.models import ModelRegistry
from serving.responses import model_metadata_json, model_status_json
from serving.signatures import DEFAULT_SIGNATURE
from serving.status import ServingStatus, invalid_argument

log = logging.getLogger("opinionrec.serving")

_PREDICTION_PATH = re.compile(
    r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)",
    re.IGNORECASE,
)
_STATUS_PATH = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?",
    re.IGNORECASE,
)
_API_PATH = re.compile(r"/v1/.*", re.IGNORECASE)
_INT64_MAX = 2**63 - 1
# Largest request body read (Content-Length or chunked): a bigger one is answered 413 without
# reading it, so a huge declared size cannot exhaust memory.
MAX_BODY_BYTES = 64 * 1024 * 1024
# Pending connections the kernel queues before `accept` (the stdlib default, 5, drops SYNs
# under a burst of clients; Linux caps it at net.core.somaxconn).
LISTEN_BACKLOG = 4096


class BodyTooLarge(ValueError):
    """A request body over MAX_BODY_BYTES."""


# TF Serving's --rest_api_timeout_in_ms default.
DEFAULT_TIMEOUT_SECONDS = 30.0
# Requests answered at once; the others wait their turn (inside their deadline).
DEFAULT_WORKERS = 8


class RestApi:
    """Answers TF Serving REST requests from the models in a registry.

    `answer` runs `handle` within `timeout_seconds` or answers a 504, as TF Serving's REST
    timeout does (the model call itself cannot be interrupted and finishes in the background).
    At most `workers` requests are handled at once; the others wait their turn, first come first
    served, inside their deadline. When a slot is free and no request is waiting, the caller's
    own thread handles the request (a hand-off to a worker thread and back costs two thread
    wake-ups: 0.2 ms a request on 2 cores, an eighth of a recommender call), and a deadline
    thread answers the 504 through the caller's `late` callback if it takes too long; otherwise
    a pool of `workers` threads handles it while the caller waits.
    """

    def __init__(self, registry: ModelRegistry, metrics: ServingMetrics | None = None,
                 workers: int = DEFAULT_WORKERS,
                 timeout_seconds: float | None = DEFAULT_TIMEOUT_SECONDS) -> None:
        self.registry = registry
        self.metrics = metrics or ServingMetrics()
        self.timeout_seconds = timeout_seconds
        self.workers = workers
        self._pool = futures.ThreadPoolExecutor(max_workers=workers,
                                                thread_name_prefix="rest-worker")
        self._slots = threading.Condition()  # guards the two counts below
        self._running = 0  # requests being handled, inline or on the pool (at most `workers`)
        self._waiting = 0  # requests given to the pool that wait for a slot
        self._deadlines = _Deadlines(timeout_seconds) if timeout_seconds is not None else None

    def answer(self, method: str, path: str, body: bytes,
               late: Callable[[int, str], None] | None = None) -> tuple[int, str] | None:
        """`handle` within the deadline: its status and JSON body, or a 504.

        With `late`, a request that finds a slot free and no one waiting is handled on this
        thread; if the deadline passes first, `late(504, body)` is called at that moment from
        the deadline thread, and this returns None once `handle` is done (its answer dropped).
        Without `late`, or when every slot is taken, the pool handles it.
        """
        if late is not None and self._take_free_slot():
            try:
                if self._deadlines is None:
                    return self.handle(method, path, body)
                return self._answer_inline(method, path, body, late)
            finally:
                self._release_slot()
        with self._slots:
            self._waiting += 1  # from now on, new requests queue behind this one
        future = self._pool.submit(self._handle_in_turn, method, path, body)
        try:
            return future.result(timeout=self.timeout_seconds)
        except futures.TimeoutError:
            return self._deadline_exceeded(method, path)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._deadlines is not None:
            self._deadlines.close()

    def _take_free_slot(self) -> bool:
        with self._slots:
            if self._waiting or self._running >= self.workers:
                return False
            self._running += 1
            return True

    def _release_slot(self) -> None:
        with self._slots:
            self._running -= 1
            self._slots.notify()

    def _handle_in_turn(self, method: str, path: str, body: bytes) -> tuple[int, str]:
        """`handle` on a pool thread, once a slot is free."""
        with self._slots:
            self._slots.wait_for(lambda: self._running < self.workers)
            self._waiting -= 1
            self._running += 1
        try:
            return self.handle(method, path, body)
        finally:
            self._release_slot()

    def _answer_inline(self, method: str, path: str, body: bytes,
                       late: Callable[[int, str], None]) -> tuple[int, str] | None:
        call = _InlineCall(time.monotonic() + self.timeout_seconds,
                           lambda: late(*self._deadline_exceeded(method, path)))
        self._deadlines.add(call)
        reply = self.handle(method, path, body)
        return reply if call.finish() else None

    def _deadline_exceeded(self, method: str, path: str) -> tuple[int, str]:
        self._observe(method, path, "DEADLINE_EXCEEDED", self.timeout_seconds, {})
        return 504, _error_body(f"Deadline exceeded: no answer within "
                                f"{self.timeout_seconds * 1000:g} ms")

    def handle(self, method: str, path: str, body: bytes) -> tuple[int, str]:
        """HTTP status and JSON body for one request; never raises. Requests to a model's
        :predict, :classify or :regress are counted in `metrics`."""
        start, served = time.perf_counter(), {}
        try:
            status, reply, code = 200, self._dispatch(method, path, body, served), "OK"
        except ServingStatus as error:
            status, reply, code = error.http_status, _error_body(error.message), error.code
        except Exception as error:  # a server fault: answer 500 and keep serving
            log.error("internal error on %s %s:\n%s", method, path, traceback.format_exc())
            status, code = 500, "INTERNAL"
            reply = _error_body(f"Internal error: {type(error).__name__}: {error}")
        self._observe(method, path, code, time.perf_counter() - start, served)
        return status, reply

    def _observe(self, method: str, path: str, code: str, seconds: float, served: dict) -> None:
        """Count a request to a model's :predict, :classify or :regress in `metrics`."""
        route = _PREDICTION_PATH.fullmatch(path) if method == "POST" else None
        if route:
            self.metrics.observe(unquote(route.group(1)), route.group(4).lower(), "REST", code,
                                 seconds, **served)

    def _dispatch(self, method: str, path: str, body: bytes, served: dict) -> str:
        if not _API_PATH.fullmatch(path):
            raise ServingStatus("NOT_FOUND", f"Not found: {method} {path} (the API is under /v1/)")
        malformed = invalid_argument(f"Malformed request: {method} {path}")
        if method == "POST":
            match = _PREDICTION_PATH.fullmatch(path)
            if not match:
                raise malformed
            name, version, label, verb = match.groups()
            spec = _model_spec(name, version, label)
            if verb == "predict":
                return self._predict(*spec, body, served)
            if verb in ("classify", "regress"):
                # As TF Serving: an unknown model is 404 and a malformed body 400 first.
                self.registry.get(*spec)
                parse_json_body(body)
                raise ServingStatus(
                    "UNIMPLEMENTED",
                    f"The {verb} API (tf.Example input) is not implemented by this local server; "
                    "use :predict, or real TF Serving for classify/regress signatures.",
                )
            raise malformed  # the verb matched case-insensitively, e.g. ":PREDICT"
        if method == "GET":
            match = _STATUS_PATH.fullmatch(path)
            if not match:
                raise malformed
            name, version, label, subresource = match.groups()
            if not name:
                raise invalid_argument("Missing model name in request.")
            spec = _model_spec(name, version, label)
            if subresource == "metadata":
                return self._metadata(*spec)
            return self._status(*spec)
        raise malformed

    def _status(self, name: str, version: int | None, label: str | None) -> str:
        return model_status_json(self.registry, name, version, label)

    def _metadata(self, name: str, version: int | None, label: str | None) -> str:
        return model_metadata_json(self.registry.get(name, version, label))

    def _predict(self, name: str, version: int | None, label: str | None, body: bytes,
                 served: dict) -> str:
        doc = parse_json_body(body)
        signature_name = signature_name_of(doc)
        servable = self.registry.get(name, version, label)
        served.update(version=servable.version, signature=signature_name or DEFAULT_SIGNATURE)
        dtypes = servable.input_dtypes(signature_name)
        inputs, request_format = predict_inputs_from_json(doc, dtypes)
        outputs = servable.predict(signature_name, inputs)
        return predict_response_json(outputs, request_format)


class _InlineCall:
    """A request handled on its connection's thread: finished first, or expired first (its 504
    sent by the deadline thread), never both."""

    __slots__ = ("deadline", "_expire", "_lock", "done")

    def __init__(self, deadline: float, expire: Callable[[], None]) -> None:
        self.deadline, self._expire = deadline, expire
        self._lock = threading.Lock()
        self.done = False  # finished or expired

    def finish(self) -> bool:
        """Mark the call finished; False when it expired (the 504 is already written)."""
        with self._lock:
            if self.done:
                return False
            # The deadline thread holds finished calls until their deadline: keep no reference
            # to the connection's handler (and its buffers) that long.
            self.done, self._expire = True, None
            return True

    def expire(self) -> None:
        """At the deadline: answer the 504 unless the call finished. The lock is held while it
        is written, so the connection's thread reads no next request before it is out."""
        with self._lock:
            if self.done:
                return
            expire, self.done, self._expire = self._expire, True, None
            try:
                expire()
            except Exception:  # noqa: BLE001  a client gone away must not stop the deadlines
                log.debug("could not answer a request past its deadline", exc_info=True)


class _Deadlines:
    """One thread that expires the inline calls still running at their deadline.

    Every deadline is the same `seconds` after its call started, so calls expire in the order
    they were added: adding one is an append, and the thread, which never sleeps longer than
    `seconds`, needs no wake-up for it.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._calls: collections.deque[_InlineCall] = collections.deque()
        self._changed = threading.Condition()
        self._closed = False
        threading.Thread(target=self._run, name="rest-deadlines", daemon=True).start()

    def add(self, call: _InlineCall) -> None:
        with self._changed:
            self._calls.append(call)

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify()

    def _run(self) -> None:
        while True:
            with self._changed:
                if self._closed:
                    return
                now, due = time.monotonic(), []
                while self._calls and (self._calls[0].done or self._calls[0].deadline <= now):
                    call = self._calls.popleft()
                    if not call.done:
                        due.append(call)
                if not due:
                    self._changed.wait(self._calls[0].deadline - now if self._calls
                                       else self.seconds)
                    continue
            for call in due:
                call.expire()


def _model_spec(name: str, version: str | None, label: str | None
                ) -> tuple[str, int | None, str | None]:
    """Decoded model name, version number and label, as TF Serving's ParseModelInfo."""
    number = None
    if version:
        number = int(version)
        if number > _INT64_MAX:
            raise invalid_argument(f"Failed to convert version: {version} to numeric.")
    return unquote(name), number, unquote(label) if label else None


def _error_body(message: str) -> str:
    return json.dumps({"error": message}, ensure_ascii=False)


class _RestHandler(BaseHTTPRequestHandler):
    """Reads a request, asks the `RestApi`, writes JSON; one log line per request."""

    protocol_version = "HTTP/1.1"  # keep-alive, as TF Serving's HTTP server
    server_version = "opinionrec-serving"
    timeout = 300  # seconds an idle keep-alive connection (and its thread) may linger
    disable_nagle_algorithm = True  # else a kept-alive reply waits ~40 ms for a delayed ACK
    # Buffered writes, flushed once per response by `_write`: status line, headers and a small
    # body leave in one send (one TCP segment) instead of two.
    wbufsize = io.DEFAULT_BUFFER_SIZE
    api: RestApi  # set by make_http_server on a subclass

    def do_GET(self) -> None:  # noqa: N802 (BaseHTTPRequestHandler naming)
        self._answer()

    def do_POST(self) -> None:  # noqa: N802
        self._answer()

    def do_PUT(self) -> None:  # noqa: N802
        self._answer()

    def do_DELETE(self) -> None:  # noqa: N802
        self._answer()

    # Methods the API has no use for get its JSON "Malformed request" 400, not the stdlib's HTML.
    do_PATCH = do_OPTIONS = do_TRACE = do_CONNECT = do_DELETE  # noqa: N815

    def do_HEAD(self) -> None:  # noqa: N802
        self._answer(head=True)

    def _answer(self, head: bool = False) -> None:
        start = time.perf_counter()
        path = urlsplit(self.path).path
        if self.command in ("GET", "HEAD") and path == METRICS_PATH:
            self._write(200, self.api.metrics.exposition(), CONTENT_TYPE, head)
            return
        try:
            body = self._read_body()
        except BodyTooLarge as error:
            status, payload = 413, _error_body(str(error))
            self.close_connection = True  # the unread body would be taken for the next request
        except ValueError as error:
            status, payload = 400, _error_body(str(error))
            self.close_connection = True
        else:
            reply = self.api.answer("GET" if head else self.command, path, body,
                                    late=functools.partial(self._answer_late, path, start, head))
            if reply is None:
                return  # answered at its deadline, by `_answer_late`
            status, payload = reply
        self._write_json(status, payload, head)
        log.info("%s %s %d %.1f ms", self.command, path, status,
                 (time.perf_counter() - start) * 1000)

    def _answer_late(self, path: str, start: float, head: bool, status: int, payload: str
                     ) -> None:
        """The 504 of a request still being handled on this connection's thread, written from
        the deadline thread. The connection closes after it: a next request on it would wait
        for the model call to finish, unread, its own deadline not running."""
        self.close_connection = True
        self._write_json(status, payload, head)
        log.info("%s %s %d %.1f ms", self.command, path, status,
                 (time.perf_counter() - start) * 1000)

    def _write_json(self, status: int, payload: str, head: bool = False) -> None:
        self._write(status, payload, "application/json", head)

    def _write(self, status: int, payload: str, content_type: str, head: bool = False) -> None:
        data = payload.encode("utf-8")
        if self.server.draining:
            self.close_connection = True  # the client must not send another request here
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if not head:
            self.wfile.write(data)
        self.wfile.flush()

    def parse_request(self) -> bool:
        """Mark the connection busy as soon as a request line has arrived (a draining server
        answers it), then parse as the stdlib does."""
        self.server.request_started(self.connection)
        return super().parse_request()

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        finally:
            if self.server.request_finished(self.connection):
                self.close_connection = True

    def send_error(self, code: int, message: str | None = None, explain: str | None = None
                   ) -> None:
        """The stdlib's own errors (a bad request line, an unknown method, headers too long) as
        `{"error": ...}` JSON like every other answer, not an HTML page."""
        self.close_connection = True
        if getattr(self, "request_version", "HTTP/0.9") == "HTTP/0.9":
            self.request_version = "HTTP/1.0"  # a garbled request line: answer with headers
        text = message or explain or self.responses.get(code, ("Error",))[0]
        self._write_json(code, _error_body(f"{text} ({code})"),
                         head=getattr(self, "command", None) == "HEAD")

    def handle_expect_100(self) -> bool:
        """Send the "100 Continue" at once (writes are buffered until `_write` flushes), so a
        client that waits for it before sending the body is not kept waiting."""
        answered = super().handle_expect_100()
        self.wfile.flush()
        return answered

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        length = self.headers.get("Content-Length")
        if not length:
            return b""
        if not length.isdigit():
            raise ValueError(f"Bad Content-Length header: {length!r}")
        _check_body_size(int(length))
        return self.rfile.read(int(length))

    def _read_chunked(self) -> bytes:
        chunks, total = [], 0
        while True:
            size_line = self.rfile.readline(1024).split(b";")[0].strip()
            try:
                size = int(size_line, 16)
            except ValueError:
                raise ValueError(f"Bad chunk size in a chunked body: {size_line!r}") from None
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailer headers
                return b"".join(chunks)
            total += size
            _check_body_size(total)
            chunks.append(self.rfile.read(size))
            self.rfile.readline(1024)  # CRLF after each chunk

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Silence the stdlib's stderr access log: `_answer` logs each request once."""


def _check_body_size(size: int) -> None:
    if size > MAX_BODY_BYTES:
        raise BodyTooLarge(f"Request body of {size} bytes is larger than the {MAX_BODY_BYTES} "
                           "bytes this server reads")


class RestServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that knows which connections are answering a request, so that it can
    drain them on shutdown; its threads never keep the process alive past that."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = LISTEN_BACKLOG

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.draining = False
        self._busy: dict[socket.socket, bool] = {}  # open connection -> answering a request
        self._changed = threading.Condition()  # guards both; notified when a request finishes

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._changed:
            self._busy[request] = False
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._changed:
            self._busy.pop(request, None)
        super().shutdown_request(request)

    def request_started(self, connection: socket.socket) -> None:
        with self._changed:
            self._busy[connection] = True

    def request_finished(self, connection: socket.socket) -> bool:
        """Mark the connection idle; True when the server is draining (close the connection)."""
        with self._changed:
            self._busy[connection] = False
            self._changed.notify_all()
            return self.draining

    def in_flight(self) -> int:
        """Requests being read or answered now."""
        with self._changed:
            return sum(self._busy.values())

    def drain(self, timeout: float) -> int:
        """After `shutdown()` and `server_close()`: close the idle connections and wait up to
        `timeout` seconds for the requests being answered; returns how many are still unanswered.
        """
        with self._changed:
            self.draining = True
            for connection, busy in self._busy.items():
                if not busy:
                    _stop_reading(connection)
            self._changed.wait_for(lambda: not any(self._busy.values()), timeout)
            return sum(self._busy.values())

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up is routine; anything else is logged with its traceback."""
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError)):
            log.debug("connection from %s ended: %s", client_address, error)
        else:
            log.exception("error while answering %s", client_address)


def _stop_reading(connection: socket.socket) -> None:
    """End an idle keep-alive connection: its thread, waiting for a request line, reads end of
    file and closes it (the write side stays open for a request that raced the close)."""
    try:
        connection.shutdown(socket.SHUT_RD)
    except OSError:
        pass  # the client has already gone


def make_http_server(host: str, port: int, api: RestApi) -> RestServer:
    """A bound (not yet serving) HTTP server for `api`; port 0 picks a free port."""
    handler = type("RestHandler", (_RestHandler,), {"api": api})
    server_class = RestServer
    if ":" in host:  # an IPv6 address
        server_class = type("RestServer6", (RestServer,), {"address_family": socket.AF_INET6})
    return server_class((host.strip("[]"), port), handler)
