"""TF Serving's REST API over a `ModelRegistry`, and an asyncio HTTP/1.1 server for it.

Routing, status codes and bodies follow tensorflow/serving `model_servers/http_rest_api_handler.cc`
and `http_rest_api_util.cc` (same path regexes, case-insensitive; model names and labels
URL-decoded; `{"error": "..."}` with the HTTP status of the canonical error code):

    GET  /v1/models/{name}[/versions/{v}|/labels/{l}]            model status
    GET  /v1/models/{name}[/versions/{v}|/labels/{l}]/metadata   signature defs
    POST /v1/models/{name}[/versions/{v}|/labels/{l}]:predict    predict (row or columnar JSON)
    POST ...:classify, ...:regress                               501 here (tf.Example APIs)
    GET  /monitoring/prometheus/metrics                          request counts and latencies

Any other method is a 400 "Malformed request"; a body over `MAX_BODY_BYTES` a 413.

`RestApi.handle` is a pure function of (method, path, body), so it is tested without sockets.
`make_http_server` puts `RestApi.answer` behind one event loop thread (`serving.http_server`), which
reads, parses and answers every connection (HTTP/1.1 keep-alive) and hands only model calls to
other threads: a signature that batches joins its batch queue, any other runs on a pool of
`workers` threads; the loop is called back when the outputs are ready, so no thread waits per
request, and a request not answered within the deadline gets a 504.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import traceback
from concurrent import futures
from urllib.parse import unquote

from serving.json_tensor import (
    parse_json_body,
    predict_inputs_from_json,
    predict_response_json,
    signature_name_of,
)
from serving.metrics import ServingMetrics
from serving.models import ModelRegistry, PreparedCall, Servable
from serving.responses import model_metadata_json, model_status_json
from serving.signatures import DEFAULT_SIGNATURE
from serving.status import ServingStatus, error_json, invalid_argument

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
# TF Serving's --rest_api_timeout_in_ms default.
DEFAULT_TIMEOUT_SECONDS = 30.0
# Model calls of signatures that do not batch running at once; the others wait their turn.
DEFAULT_WORKERS = 8
# A predict body up to this size is parsed and checked on the event loop (microseconds); a
# bigger one is handled whole on a worker thread, so one huge request cannot stall the loop.
INLINE_BODY_BYTES = 64 * 1024
# A request this small to a quick signature (`Servable.is_quick`) that finds no other request
# being answered has its model call made on the event loop itself. A call far slower than its
# signature's recent ones holds the loop once; the signature is then no longer quick.
QUICK_BODY_BYTES = 4 * 1024


class RestApi:
    """Answers TF Serving REST requests from the models in a registry.

    `handle` answers one request on the calling thread. `answer`, for the event loop, checks a
    predict request there and only waits for its model call, which runs on a worker thread
    (at most `workers` at once, first come first served) or in its signature's batch, and
    answers a 504 when `timeout_seconds` pass first, as TF Serving's REST timeout does (the
    model call itself cannot be interrupted and finishes in the background; one still queued
    is dropped).
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

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    # === One request on the calling thread ===

    def handle(self, method: str, path: str, body: bytes) -> tuple[int, str]:
        """HTTP status and JSON body for one request; never raises. Requests to a model's
        :predict, :classify or :regress are counted in `metrics`."""
        start, served = time.perf_counter(), {}
        route = _PREDICTION_PATH.fullmatch(path) if method == "POST" else None
        try:
            status, reply, code = 200, self._dispatch(method, path, body, route, served), "OK"
        except Exception as error:  # noqa: BLE001  every failure is an answer
            status, reply, code = self._error(method, path, error)
        self._observe(route, code, time.perf_counter() - start, served)
        return status, reply

    # === One request on the event loop ===

    async def answer(self, method: str, path: str, body: bytes, alone: bool = False
                     ) -> tuple[int, str, bool]:
        """Status, JSON body, and whether the connection must close after it (a 504 whose
        model call goes on). Never raises. `alone`: no other request is being answered, so a
        quick model call may run on the caller's thread (see `Servable.is_quick`)."""
        route = _PREDICTION_PATH.fullmatch(path) if method == "POST" else None
        if route is None or route.group(4) != "predict":
            return (*self.handle(method, path, body), False)  # status, metadata, errors: cheap
        start, served = time.perf_counter(), {}
        request_format = None  # until the request is parsed here
        if len(body) > INLINE_BODY_BYTES:
            call = self._pool.submit(self.handle, method, path, body)
        else:
            try:
                servable, prepared, request_format = self._prepare(route, body, served)
                # Alone, a quick call runs right here: handing it to another thread and back
                # costs two thread wake-ups, a sixth of a recommender call on 2 cores. Under
                # load, calls must not take turns on the event loop.
                now = (alone and len(body) <= QUICK_BODY_BYTES
                       and servable.is_quick(prepared.signature))
                call = servable.submit(prepared, self._pool, now=now)
            except Exception as error:  # noqa: BLE001
                return self._failed(method, path, error, route, start, served)
        try:
            if not call.done():  # else it ran right here: no need to go through the loop
                if not await _finished_within(call, self.timeout_seconds):
                    call.cancel()  # dropped if it has not started
                    self._observe(route, "DEADLINE_EXCEEDED", self.timeout_seconds, served)
                    return 504, error_json(f"Deadline exceeded: no answer within "
                                           f"{self.timeout_seconds * 1000:g} ms"), True
            result = call.result()
            if request_format is None:
                return (*result, False)  # handled (and counted) whole on a worker
            reply = predict_response_json(result, request_format)
        except Exception as error:  # noqa: BLE001
            return self._failed(method, path, error, route, start, served)
        self._observe(route, "OK", time.perf_counter() - start, served)
        return 200, reply, False

    # === Routing ===

    def _error(self, method: str, path: str, error: Exception) -> tuple[int, str, str]:
        """(HTTP status, JSON body, canonical code) of a failed request."""
        if isinstance(error, ServingStatus):
            return error.http_status, error_json(error.message), error.code
        # A server fault: answer 500 and keep serving.
        log.error("internal error on %s %s:\n%s", method, path,
                  "".join(traceback.format_exception(error)))
        return 500, error_json(f"Internal error: {type(error).__name__}: {error}"), "INTERNAL"

    def _failed(self, method: str, path: str, error: Exception, route: re.Match, start: float,
                served: dict) -> tuple[int, str, bool]:
        """`answer`'s reply to a predict request that failed, counted in `metrics`."""
        status, reply, code = self._error(method, path, error)
        self._observe(route, code, time.perf_counter() - start, served)
        return status, reply, False

    def _observe(self, route: re.Match | None, code: str, seconds: float, served: dict) -> None:
        """Count a request to a model's :predict, :classify or :regress (its `route`, None for
        other requests) in `metrics`."""
        if route:
            self.metrics.observe(unquote(route.group(1)), route.group(4).lower(), "REST", code,
                                 seconds, **served)

    def _dispatch(self, method: str, path: str, body: bytes, route: re.Match | None,
                  served: dict) -> str:
        """The JSON reply to a request (`route`: its match of a POST prediction path)."""
        if not _API_PATH.fullmatch(path):
            raise ServingStatus("NOT_FOUND", f"Not found: {method} {path} (the API is under /v1/)")
        malformed = invalid_argument(f"Malformed request: {method} {path}")
        if method == "POST":
            if not route:
                raise malformed
            name, version, label, verb = route.groups()
            spec = _model_spec(name, version, label)
            if verb == "predict":
                servable, prepared, request_format = self._prepare(route, body, served)
                return predict_response_json(servable.submit(prepared).result(), request_format)
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
                return model_metadata_json(self.registry.get(*spec))
            return model_status_json(self.registry, *spec)
        raise malformed

    def _prepare(self, route: re.Match, body: bytes, served: dict
                 ) -> tuple[Servable, PreparedCall, str]:
        """A predict request parsed and checked against its signature: the servable, the call
        to make, and the request's format (row or columnar) for the answer."""
        name, version, label, _ = route.groups()
        doc = parse_json_body(body)
        signature_name = signature_name_of(doc)
        servable = self.registry.get(*_model_spec(name, version, label))
        served.update(version=servable.version, signature=signature_name or DEFAULT_SIGNATURE)
        inputs, request_format = predict_inputs_from_json(
            doc, servable.input_dtypes(signature_name))
        return servable, servable.prepare(signature_name, inputs), request_format


async def _finished_within(call: futures.Future, seconds: float | None) -> bool:
    """Wait on the event loop for a future another thread completes: True once it is done,
    False if `seconds` pass first (lighter than asyncio.wait_for over wrap_future)."""
    loop = asyncio.get_running_loop()
    waiter = loop.create_future()

    def settle(done: bool) -> None:
        if not waiter.done():
            waiter.set_result(done)

    def wake(_: futures.Future) -> None:  # on the thread that completed `call`
        try:
            loop.call_soon_threadsafe(settle, True)
        except RuntimeError:
            pass  # the loop has stopped: the server was drained and shut down meanwhile

    call.add_done_callback(wake)
    timer = loop.call_later(seconds, settle, False) if seconds is not None else None
    try:
        return await waiter
    finally:
        if timer is not None:
            timer.cancel()


def _model_spec(name: str, version: str | None, label: str | None
                ) -> tuple[str, int | None, str | None]:
    """Decoded model name, version number and label, as TF Serving's ParseModelInfo."""
    number = None
    if version:
        number = int(version)
        if number > _INT64_MAX:
            raise invalid_argument(f"Failed to convert version: {version} to numeric.")
    return unquote(name), number, unquote(label) if label else None
