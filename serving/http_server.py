"""The REST API's HTTP/1.1 server: one asyncio event loop thread for every connection.

The loop reads and parses requests, asks `RestApi.answer` (which checks a predict request on the
loop and waits, without holding a thread, for its model call on a worker or in a batch) and
writes the replies. Compared with a thread per connection, Python's interpreter lock is no longer
passed among a thread per client on every request: on 2 cores the same requests cost about half
the server CPU (benchmarks/serving.py).

What clients see: HTTP/1.1 keep-alive (HTTP/1.0 closes unless asked), `Content-Length` or chunked
bodies, `Expect: 100-continue`, HEAD as GET without the body, every error as `{"error": ...}` JSON
(a garbled request line, an unknown method, headers too long), a body over `MAX_BODY_BYTES`
answered 413 before it is read, TCP_NODELAY on every connection, a listen backlog of
`LISTEN_BACKLOG`, idle connections closed after `IDLE_SECONDS`. `drain` lets the requests being
answered finish after the listener is closed (each answered with `Connection: close`) and closes
idle connections.
"""

from __future__ import annotations

import asyncio
import email.utils
import http
import logging
import socket
import threading
import time
from typing import Any

from serving.metrics import CONTENT_TYPE, METRICS_PATH
from serving.status import error_json

log = logging.getLogger("opinionrec.serving")

# Largest request body read (Content-Length or chunked): a bigger one is answered 413 without
# reading it, so a huge declared size cannot exhaust memory.
MAX_BODY_BYTES = 64 * 1024 * 1024
# Request line and headers together; beyond this a 431, as from a server with fixed buffers.
MAX_HEADER_BYTES = 64 * 1024
MAX_HEADERS = 100  # the stdlib's http.client limit
# Pending connections the kernel queues before `accept` (Linux caps it at net.core.somaxconn).
LISTEN_BACKLOG = 4096
IDLE_SECONDS = 300  # an idle keep-alive connection is closed after this
SERVER_NAME = "opinionrec-serving"
# Methods passed to the API (which answers those it has no use for with a 400, as TF Serving);
# anything else is a 501.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE",
                      "CONNECT"})


class BodyTooLarge(ValueError):
    """A request body over MAX_BODY_BYTES."""


class HttpError(ValueError):
    """A request this server cannot parse: its HTTP status and message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _Request:
    __slots__ = ("method", "path", "version", "headers", "body_start", "body_length", "chunked",
                 "keep_alive", "expects_continue")


def _parse_head(buffer: bytearray, end: int) -> _Request:
    """The request line and headers in `buffer[:end]` (`end` at the blank line)."""
    lines = bytes(buffer[:end]).decode("latin-1").split("\r\n")
    words = lines[0].split()
    if len(words) != 3 or not words[2].startswith("HTTP/1."):
        raise HttpError(400, f"Bad request syntax ({lines[0][:200]!r})")
    request = _Request()
    request.method, target, request.version = words
    if request.method not in _METHODS:
        raise HttpError(501, f"Unsupported method ({request.method[:50]!r})")
    if len(lines) - 1 > MAX_HEADERS:
        raise HttpError(431, f"Too many headers (more than {MAX_HEADERS})")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            raise HttpError(400, f"Bad header line ({line[:200]!r})")
        headers[name.lower()] = value.strip()
    request.headers = headers
    request.path = target.split("?", 1)[0].split("#", 1)[0]
    if "://" in request.path:  # an absolute URI: keep its path
        request.path = "/" + request.path.split("://", 1)[1].partition("/")[2]
    connection = headers.get("connection", "").lower()
    request.keep_alive = ("close" not in connection if request.version == "HTTP/1.1"
                          else "keep-alive" in connection)
    request.chunked = "chunked" in headers.get("transfer-encoding", "").lower()
    request.body_start = end + 4
    request.body_length = 0
    if not request.chunked:
        length = headers.get("content-length", "")
        if length and not length.isdigit():
            raise HttpError(400, f"Bad Content-Length header: {length[:50]!r}")
        request.body_length = int(length or 0)
        _check_body_size(request.body_length)
    request.expects_continue = (request.version == "HTTP/1.1"
                                and headers.get("expect", "").lower() == "100-continue")
    return request


def _chunked_body(buffer: bytearray, start: int) -> tuple[bytes, int] | None:
    """A chunked body from `buffer[start:]`: (body, end of the message), None if incomplete."""
    chunks, total, at = [], 0, start
    while True:
        line_end = buffer.find(b"\r\n", at)
        if line_end < 0:
            if len(buffer) - at > 1024:
                raise HttpError(400, "Bad chunk size in a chunked body")
            return None
        size_text = bytes(buffer[at:line_end]).split(b";")[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise HttpError(400, f"Bad chunk size in a chunked body: {size_text[:50]!r}") from None
        total += size
        _check_body_size(total)
        if size == 0:  # then trailer headers, up to a blank line
            end = buffer.find(b"\r\n\r\n", line_end)
            if end < 0:
                return None
            return b"".join(chunks), end + 4
        data_start = line_end + 2
        if len(buffer) < data_start + size + 2:
            return None
        chunks.append(bytes(buffer[data_start:data_start + size]))
        at = data_start + size + 2


def _check_body_size(size: int) -> None:
    if size > MAX_BODY_BYTES:
        raise BodyTooLarge(f"Request body of {size} bytes is larger than the {MAX_BODY_BYTES} "
                           "bytes this server reads")


class _Date:
    """The Date header, formatted once a second."""

    second, text = -1, ""

    @classmethod
    def now(cls) -> str:
        second = int(time.time())
        if second != cls.second:
            cls.second, cls.text = second, email.utils.formatdate(second, usegmt=True)
        return cls.text


class _Connection(asyncio.Protocol):
    """One client connection: requests are answered one at a time, in order."""

    def __init__(self, server: "RestServer") -> None:
        self.server = server
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.socket: Any = None
        self.busy = False  # a request is being answered
        self.closing = False
        self.sent_continue = False
        self.eof = False  # the client will send nothing more
        self.idle_timer: asyncio.TimerHandle | None = None

    # === asyncio callbacks ===

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.socket = transport.get_extra_info("socket")
        try:
            # Else a small reply waits for the client's delayed ACK (~40 ms).
            self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except (OSError, AttributeError):
            pass
        self.server.connection_opened(self)
        self._arm_idle_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        if self.idle_timer is not None:
            self.idle_timer.cancel()
        self.server.connection_closed(self)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.busy:
            self._next_request()
        elif len(self.buffer) > MAX_HEADER_BYTES:
            self.transport.pause_reading()  # pipelined requests wait until this one is answered

    def eof_received(self) -> bool | None:
        self.eof = True
        if not self.busy:
            self.close()
        return True  # keep the write side open for a reply in progress

    # === requests ===

    def _next_request(self) -> None:
        """Start answering the next complete request in the buffer, if any."""
        if self.closing or not self.buffer:
            return
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buffer) > MAX_HEADER_BYTES:
                self._fail(431, "Request header fields too large")
            return
        try:
            request = _parse_head(self.buffer, end)
            if request.chunked:
                parsed = _chunked_body(self.buffer, request.body_start)
                if parsed is None:
                    return self._await_body(request)
                body, message_end = parsed
            else:
                message_end = request.body_start + request.body_length
                if len(self.buffer) < message_end:
                    return self._await_body(request)
                body = bytes(self.buffer[request.body_start:message_end])
        except BodyTooLarge as error:
            return self._fail(413, str(error))
        except HttpError as error:
            return self._fail(error.status, f"{error} ({error.status})")
        del self.buffer[:message_end]
        self.sent_continue = False
        self.busy = True
        self.server.request_started(self)
        if self.idle_timer is not None:
            self.idle_timer.cancel()
        asyncio.get_running_loop().create_task(self._answer(request, body))

    def _await_body(self, request: _Request) -> None:
        if request.expects_continue and not self.sent_continue:
            self.sent_continue = True
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    async def _answer(self, request: _Request, body: bytes) -> None:
        start = time.perf_counter()
        head = request.method == "HEAD"
        method = "GET" if head else request.method
        close = not request.keep_alive
        try:
            if method == "GET" and request.path == METRICS_PATH:
                status, payload = 200, self.server.api.metrics.exposition()
                content_type = CONTENT_TYPE
            else:
                status, payload, must_close = await self.server.api.answer(
                    method, request.path, body, alone=self.server.answering == 1)
                content_type, close = "application/json", close or must_close
        except Exception as error:  # noqa: BLE001  a server fault: answer it, keep serving
            log.exception("error while answering %s %s", request.method, request.path)
            status, content_type, close = 500, "application/json", True
            payload = error_json(f"Internal error: {type(error).__name__}: {error}")
        self._write(status, payload, content_type, head, close or self.server.draining)
        log.info("%s %s %d %.1f ms", request.method, request.path, status,
                 (time.perf_counter() - start) * 1000)
        self.busy = False
        self.server.request_finished(self)
        if not self.closing:
            self._arm_idle_timer()
            self.transport.resume_reading()
            self._next_request()
            if self.eof and not self.busy:
                self.close()

    # === writing and closing ===

    def _write(self, status: int, payload: str, content_type: str, head: bool, close: bool
               ) -> None:
        if self.closing:
            return
        data = payload.encode("utf-8")
        try:
            reason = http.HTTPStatus(status).phrase
        except ValueError:
            reason = ""
        head_lines = (f"HTTP/1.1 {status} {reason}\r\nServer: {SERVER_NAME}\r\n"
                      f"Date: {_Date.now()}\r\nContent-Type: {content_type}\r\n"
                      f"Content-Length: {len(data)}\r\n"
                      + ("Connection: close\r\n" if close else "") + "\r\n")
        self.transport.write(head_lines.encode("latin-1") + (b"" if head else data))
        if close:
            self.close()

    def _fail(self, status: int, message: str) -> None:
        """Answer a request that could not be read, then close: what follows it is unknown."""
        log.info("bad request: %d %s", status, message)
        self.busy = True  # read nothing more
        self._write(status, error_json(message), "application/json", False, True)

    def close(self) -> None:
        if not self.closing:
            self.closing = True
            self.transport.close()  # after the buffered writes

    def _arm_idle_timer(self) -> None:
        if self.idle_timer is not None:
            self.idle_timer.cancel()
        self.idle_timer = asyncio.get_running_loop().call_later(IDLE_SECONDS, self._idle)

    def _idle(self) -> None:
        if not self.busy:
            self.close()


class RestServer:
    """The REST port: bound at construction, served by `serve_forever` on the calling thread
    (an asyncio loop) until `drain` ends it. Thread-safe: `shutdown`, `drain` and `in_flight`
    are called from other threads."""

    def __init__(self, host: str, port: int, api: Any) -> None:
        self.api = api
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._socket = socket.socket(family, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host.strip("[]"), port))
        self._socket.listen(LISTEN_BACKLOG)
        self._socket.setblocking(False)
        self.server_address = self._socket.getsockname()
        self.draining = False
        self._loop = asyncio.new_event_loop()
        self._listener: asyncio.AbstractServer | None = None
        self._running = threading.Event()
        self._stopped = False  # shut down before serving
        self._stopping = False  # drained: the loop ends once no request is being answered
        self.answering = 0  # requests read and not yet answered (the loop's thread only)
        self._busy: dict[Any, bool] = {}  # the socket of each open connection -> answering?
        self._connections: dict[Any, _Connection] = {}
        self._changed = threading.Condition()  # guards _busy; notified when a request ends

    # === life cycle (other threads) ===

    def serve_forever(self) -> None:
        """Answer requests until `drain` is done (or `shutdown` before any was served)."""
        asyncio.set_event_loop(self._loop)
        if self._stopped:
            return
        self._listener = self._loop.run_until_complete(self._loop.create_server(
            lambda: _Connection(self), sock=self._socket, backlog=LISTEN_BACKLOG))
        self._running.set()
        try:
            self._loop.run_forever()
        finally:
            for connection in list(self._connections.values()):
                connection.transport.abort()
            tasks = asyncio.all_tasks(self._loop)  # requests still unanswered after the drain
            for task in tasks:
                task.cancel()
            self._loop.run_until_complete(asyncio.gather(*tasks, asyncio.sleep(0),
                                                         return_exceptions=True))
            self._loop.close()

    def shutdown(self) -> None:
        """Stop accepting connections (those open stay, see `drain`)."""
        if not self._running.is_set():
            self._stopped = True
            self._socket.close()
            return
        asyncio.run_coroutine_threadsafe(self._close_listener(), self._loop).result(30)

    def server_close(self) -> None:
        """Nothing left to close: `shutdown` closed the listening socket."""

    def in_flight(self) -> int:
        """Requests being answered now."""
        with self._changed:
            return sum(self._busy.values())

    def drain(self, timeout: float) -> int:
        """After `shutdown()`: close the idle connections, wait up to `timeout` seconds for the
        requests being answered (each answered with `Connection: close`), then stop the loop;
        returns how many were still unanswered."""
        if not self._running.is_set():
            return 0
        self.draining = True
        self._loop.call_soon_threadsafe(self._close_idle)
        with self._changed:
            self._changed.wait_for(lambda: not any(self._busy.values()), timeout)
            unanswered = sum(self._busy.values())
        # The loop ends now, or (as a thread per connection would) once the requests still
        # running are answered.
        self._loop.call_soon_threadsafe(self._stop_when_idle)
        return unanswered

    # === bookkeeping (the loop's thread) ===

    async def _close_listener(self) -> None:
        self._listener.close()  # the listening socket closes now; connections stay

    def _stop_when_idle(self) -> None:
        self._stopping = True
        if not any(connection.busy for connection in self._connections.values()):
            self._loop.stop()

    def _close_idle(self) -> None:
        for connection in list(self._connections.values()):
            if not connection.busy:
                connection.close()

    def connection_opened(self, connection: _Connection) -> None:
        self._connections[connection.socket] = connection
        with self._changed:
            self._busy[connection.socket] = False
        if self.draining:
            connection.close()

    def connection_closed(self, connection: _Connection) -> None:
        self._connections.pop(connection.socket, None)
        with self._changed:
            self._busy.pop(connection.socket, None)
            self._changed.notify_all()

    def request_started(self, connection: _Connection) -> None:
        self.answering += 1
        with self._changed:
            self._busy[connection.socket] = True

    def request_finished(self, connection: _Connection) -> None:
        self.answering -= 1
        with self._changed:
            if connection.socket in self._busy:
                self._busy[connection.socket] = False
            self._changed.notify_all()
        if self.draining:
            connection.close()
            if self._stopping:
                self._stop_when_idle()


def make_http_server(host: str, port: int, api: Any) -> RestServer:
    """A bound (not yet serving) HTTP server for `api`; port 0 picks a free port."""
    return RestServer(host, port, api)
