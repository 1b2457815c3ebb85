"""The local TF-Serving-compatible server over real HTTP and gRPC, against the models called
directly (expected outputs never come from the server's own conversion code)."""

from __future__ import annotations

import base64
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from http.client import HTTPConnection
from pathlib import Path

import numpy as np
import pytest

from serving import layout
from serving.models import ModelRegistry
from serving.server import ModelServer
from serving.testing import save_slow_model, save_toy_model

REPO = Path(__file__).resolve().parents[1]
TEXTS = ["great battery life", "ok", "Très bon son"]
# Replayed by the server when it loads each version (a failure would fail the load).
WARMUP = {"serving_default": {"text": ["warm up"]}, "scaled": {"k": 2}, "words": {}}


# === Fixtures and helpers ===


@pytest.fixture(scope="module")
def models_root(tmp_path_factory) -> Path:
    """`toy` with version 1 (scale 1) and version 2 (scale 2); models.config serving both."""
    tmp = tmp_path_factory.mktemp("serving")
    root = tmp / "models"
    for scale in (1.0, 2.0):
        layout.export_model(save_toy_model(tmp / f"src_{scale}", scale), root, "toy",
                            warmup_inputs=WARMUP)
    layout.write_models_config(root)
    return root


@pytest.fixture(scope="module")
def server(models_root):
    registry = ModelRegistry.from_config_file(models_root / "models.config")
    with ModelServer(registry, rest_port=0, grpc_port=0, poll_seconds=0) as running:
        yield running


@pytest.fixture(scope="module")
def direct(models_root):
    """Call a signature of a version directly: (version, signature, **inputs) -> numpy dict."""
    import tensorflow as tf

    loaded = {v: tf.saved_model.load(str(models_root / "toy" / str(v))) for v in (1, 2)}

    def call(version: int, signature: str, **inputs) -> dict[str, np.ndarray]:
        outputs = loaded[version].signatures[signature](**{k: tf.constant(v)
                                                             for k, v in inputs.items()})
        return {k: v.numpy() for k, v in outputs.items()}

    return call


def http(server: ModelServer, method: str, path: str, body: object = None
         ) -> tuple[int, dict, str]:
    """(status, parsed JSON, raw text) of one request; `body` dict/list -> JSON, bytes as is."""
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    request = urllib.request.Request(server.rest_url + path, data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, raw = response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read().decode()
    return status, json.loads(raw), raw


def predict(server: ModelServer, body: object, path: str = "/v1/models/toy:predict") -> dict:
    status, reply, raw = http(server, "POST", path, body)
    assert status == 200, raw
    return reply


def decoded(values):
    return [v.decode() for v in values]



# === Status and metadata ===


def test_status_lists_every_version_newest_first(server):
    status, reply, _ = http(server, "GET", "/v1/models/toy")
    assert status == 200
    assert reply == {"model_version_status": [
        {"version": v, "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
        for v in ("2", "1")
    ]}
    status, reply, _ = http(server, "GET", "/v1/models/toy/versions/1")
    assert status == 200 and [s["version"] for s in reply["model_version_status"]] == ["1"]


def test_metadata_renders_the_saved_model_signature_defs(server, models_root):
    from google.protobuf import json_format
    from tensorflow.core.protobuf import saved_model_pb2

    status, reply, _ = http(server, "GET", "/v1/models/toy/metadata")
    assert status == 200
    assert reply["model_spec"] == {"name": "toy", "version": "2", "signature_name": ""}
    saved_model = saved_model_pb2.SavedModel()
    saved_model.ParseFromString((models_root / "toy" / "2" / "saved_model.pb").read_bytes())
    expected = {
        name: json_format.MessageToDict(signature, preserving_proto_field_name=True,
                                        always_print_fields_with_no_presence=True)
        for name, signature in saved_model.meta_graphs[0].signature_def.items()
    }
    assert reply["metadata"]["signature_def"]["signature_def"] == expected
    text = expected["serving_default"]["inputs"]["text"]
    assert text["dtype"] == "DT_STRING" and text["tensor_shape"]["dim"][0]["size"] == "-1"

    status, reply, _ = http(server, "GET", "/v1/models/toy/versions/1/metadata")
    assert status == 200 and reply["model_spec"]["version"] == "1"


# === Predict ===


def test_row_format_with_several_outputs_gives_one_object_per_row(server, direct):
    expected = direct(2, "serving_default", text=TEXTS)
    reply = predict(server, {"instances": TEXTS})
    rows = reply["predictions"]
    assert len(rows) == len(TEXTS)
    for i, row in enumerate(rows):
        assert sorted(row) == ["length", "scores", "text_bytes", "tokens"]
        np.testing.assert_array_equal(np.float32(row["scores"]), expected["scores"][i])
        assert row["tokens"] == decoded(expected["tokens"][i])
        assert row["length"] == int(expected["length"][i])
        # `text_bytes` ends in _bytes: TF Serving writes it base64-encoded.
        assert base64.b64decode(row["text_bytes"]["b64"]) == TEXTS[i].encode()


def test_columnar_format_gives_an_object_of_outputs(server, direct):
    expected = direct(2, "serving_default", text=TEXTS)
    outputs = predict(server, {"inputs": TEXTS})["outputs"]
    np.testing.assert_array_equal(np.float32(outputs["scores"]), expected["scores"])
    assert outputs["length"] == expected["length"].tolist()
    assert [decoded(t) for t in expected["tokens"]] == outputs["tokens"]
    named = predict(server, {"inputs": {"text": TEXTS}})["outputs"]
    assert named == outputs


def test_a_single_output_is_written_without_its_name(server, direct):
    expected = direct(2, "length", text=TEXTS)["length"].tolist()
    assert predict(server, {"instances": TEXTS, "signature_name": "length"}) == {
        "predictions": expected}
    assert predict(server, {"inputs": TEXTS, "signature_name": "length"}) == {"outputs": expected}
    assert predict(server, {"instances": [{"text": t} for t in TEXTS],
                            "signature_name": "length"}) == {"predictions": expected}


def test_binary_inputs_as_b64_anywhere_a_string_goes(server, direct):
    raw = [b"\xff\xfe not utf-8", "naïve".encode()]
    encoded = [{"b64": base64.b64encode(v).decode()} for v in raw]
    expected = direct(2, "serving_default", text=raw)
    for body in ({"instances": encoded}, {"instances": [{"text": e} for e in encoded]}):
        rows = predict(server, body)["predictions"]
        assert [base64.b64decode(r["text_bytes"]["b64"]) for r in rows] == raw
        assert [r["length"] for r in rows] == expected["length"].tolist()
    outputs = predict(server, {"inputs": {"text": encoded}})["outputs"]
    assert [base64.b64decode(v["b64"]) for v in outputs["text_bytes"]] == raw


def test_two_named_inputs_of_different_dtypes(server, direct):
    weights = [0.5, 2, -1.25]  # a JSON integer is a valid float
    expected = direct(2, "pair", text=TEXTS, weight=np.float32(weights))
    rows = predict(server, {"signature_name": "pair", "instances": [
        {"text": t, "weight": w} for t, w in zip(TEXTS, weights)]})["predictions"]
    np.testing.assert_array_equal(np.float32([r["weighted"] for r in rows]), expected["weighted"])
    assert [r["echo"] for r in rows] == TEXTS
    outputs = predict(server, {"signature_name": "pair",
                               "inputs": {"text": TEXTS, "weight": weights}})["outputs"]
    np.testing.assert_array_equal(np.float32(outputs["weighted"]), expected["weighted"])


def test_scalar_inputs_and_outputs_need_the_columnar_format(server, direct):
    x = [[1.0, 2.0, 3.0], [0.5, -1.0, 4.0]]
    expected = direct(2, "scaled", x=np.float32(x), k=np.int32(3))
    outputs = predict(server, {"signature_name": "scaled", "inputs": {"x": x, "k": 3}})["outputs"]
    np.testing.assert_array_equal(np.float32(outputs["y"]), expected["y"])
    assert np.float32(outputs["total"]) == expected["total"]
    # Row format batches every input along a new first dimension: `k` becomes [2], not [].
    status, reply, _ = http(server, "POST", "/v1/models/toy:predict", {
        "signature_name": "scaled", "instances": [{"x": row, "k": 3} for row in x]})
    assert status == 400 and "Input k has shape [2]" in reply["error"]


def test_floats_are_written_as_tf_serving_writes_them(server, direct):
    weights = [0.1, float("nan"), float("inf"), 1e-30]
    expected = direct(2, "pair", text=["abc"] * 4, weight=np.float32(weights))["weighted"]
    status, reply, raw = http(server, "POST", "/v1/models/toy:predict", {
        "signature_name": "pair", "inputs": {"text": ["abc"] * 4, "weight": weights}})
    assert status == 200
    assert "NaN" in raw and "Infinity" in raw  # TF Serving's tokens for non-finite floats
    values = np.float32(reply["outputs"]["weighted"])
    assert values[0] == expected[0] and math.isnan(values[1]) and values[2] == expected[2]
    assert values[3] == expected[3]
    whole = predict(server, {"signature_name": "length", "inputs": ["ab"]})
    assert whole == {"outputs": [2]}  # ints stay ints; whole floats keep a ".0"
    assert '"scores": [[4.0, 8.0, 12.0]]' in http(
        server, "POST", "/v1/models/toy:predict", {"inputs": ["ab"]})[2]


def test_float_tokens_are_short_when_they_round_trip_and_exact_when_not():
    from serving.json_tensor import _decimal_tokens

    values = np.float32([0.1, 1 / 3, -np.inf, np.nan, 16777217.0, -0.0, 3.4028235e38])
    tokens = _decimal_tokens(values.reshape(1, 7), "%.9g")
    assert tokens.shape == (1, 7)
    assert tokens.tolist() == [["0.1", "0.333333343", "-Infinity", "NaN", "16777216.0", "-0.0",
                                "3.40282347e+38"]]
    assert _decimal_tokens(np.float64([0.1, 1 / 3]), "%.17g").tolist() == [
        "0.1", "0.33333333333333331"]


def test_versions_are_selected_by_path(server, direct):
    for version in (1, 2):
        reply = predict(server, {"instances": ["ab"]}, f"/v1/models/toy/versions/{version}:predict")
        np.testing.assert_array_equal(np.float32(reply["predictions"][0]["scores"]),
                                      direct(version, "serving_default", text=["ab"])["scores"][0])
    latest = predict(server, {"instances": ["ab"]})["predictions"][0]["scores"]
    assert latest == [4.0, 8.0, 12.0]  # version 2 (scale 2): the latest


# === Errors: 4xx with a message, and the server keeps answering ===

PAIR = "/v1/models/toy:predict"


def NESTED(depth: int) -> list:  # noqa: N802  ["a"] inside `depth` lists
    value: object = "a"
    for _ in range(depth):
        value = [value]
    return value  # type: ignore[return-value]

BAD_REQUESTS = [
    ("POST", PAIR, b"{not json", 400, "JSON Parse error"),
    ("POST", PAIR, b"", 400, "The document is empty"),
    ("POST", PAIR, [1, 2], 400, "Is not object"),
    ("POST", PAIR, {"signature_name": 3, "instances": ["a"]}, 400, "must be a string"),
    ("POST", PAIR, {"signature_name": "length"}, 400, "Missing 'inputs' or 'instances' key"),
    ("POST", PAIR, {"instances": ["a"], "inputs": ["a"]}, 400, "expecting only one of"),
    ("POST", PAIR, {"instances": []}, 400, "No values in 'instances' array"),
    ("POST", PAIR, {"instances": "a"}, 400, "to be an list/array"),
    ("POST", PAIR, {"instances": [1]}, 400, "is not of expected type: string"),
    ("POST", PAIR, {"instances": [["a"]]}, 400, "Input text has shape [1,1]"),
    ("POST", PAIR, {"instances": [{"b64": "***"}]}, 400, "Unable to base64 decode"),
    ("POST", PAIR, {"signature_name": "pair", "instances": ["a"]}, 400,
     "expecting list of objects"),
    ("POST", PAIR, {"signature_name": "pair", "instances": [{"text": "a"}]}, 400,
     "keys must be equal to: text,weight"),
    ("POST", PAIR, {"signature_name": "pair", "instances": [{"text": "a", "weight": "x"}]}, 400,
     "is not of expected type: float"),
    ("POST", PAIR, {"signature_name": "pair", "instances": [{"text": "a", "weight": True}]},
     400, "Type: True is not of expected type: float"),
    ("POST", PAIR, {"signature_name": "pair", "inputs": {"text": ["a"], "weight": [16777217]}},
     400, "without loss of precision"),
    ("POST", PAIR, {"signature_name": "pair", "inputs": {"text": ["a"]}}, 400,
     "Missing named input: weight in 'inputs' object."),
    ("POST", PAIR, {"signature_name": "pair", "inputs": ["a"]}, 400, "expecting an object"),
    ("POST", PAIR, {"signature_name": "scaled", "inputs": {"x": [[1, 2, 3], [4, 5]], "k": 1}},
     400, "Encountered list at unexpected size: 2 at level: 1 expected size: 3"),
    ("POST", PAIR, {"signature_name": "scaled", "inputs": {"x": [[1, 2]], "k": 1}}, 400,
     "Input x has shape [1,2], but signature scaled expects [-1,3]"),
    ("POST", PAIR, {"signature_name": "scaled", "inputs": {"x": [[1, 2, 3]], "k": 1.5}}, 400,
     "is not of expected type: int32"),
    ("POST", PAIR, {"signature_name": "nope", "instances": ["a"]}, 400,
     'Serving signature name: "nope" not found in signature def'),
    ("POST", "/v1/models/nope:predict", {"instances": ["a"]}, 404,
     "Servable not found for request: Latest(nope)"),
    ("POST", "/v1/models/toy/versions/7:predict", {"instances": ["a"]}, 404,
     "Servable not found for request: Specific(toy, 7)"),
    ("POST", "/v1/models/toy/labels/stable:predict", {"instances": ["a"]}, 400,
     "Unrecognized servable version label: stable"),
    ("POST", "/v1/models/toy:classify", {"examples": [{}]}, 501, "not implemented"),
    ("POST", "/v1/models/toy:explain", {"instances": ["a"]}, 400, "Malformed request"),
    ("GET", "/v1/models/nope", None, 404, "Could not find any versions of model nope"),
    ("GET", "/v1/models/toy/versions/7", None, 404, "Could not find version 7 of model toy"),
    ("GET", "/v1/models/toy/versions/x", None, 400, "Malformed request: GET"),
    ("GET", "/v1/models/toy/versions/99999999999999999999", None, 400, "Failed to convert"),
    ("GET", "/v1/models", None, 400, "Missing model name in request."),
    ("GET", "/v1/models/nope/metadata", None, 404, "Servable not found"),
    ("DELETE", "/v1/models/toy", None, 400, "Malformed request: DELETE"),
    ("PATCH", "/v1/models/toy", None, 400, "Malformed request: PATCH"),
    ("OPTIONS", "/v1/models/toy", None, 400, "Malformed request: OPTIONS"),
    ("TRACE", "/v1/models/toy", None, 400, "Malformed request: TRACE"),
    ("POST", "/v1/models/nope:classify", {"examples": [{}]}, 404, "Servable not found"),
    ("POST", "/v1/models/toy:regress", b"{not json", 400, "JSON Parse error"),
    ("GET", "/healthz", None, 404, "Not found"),
    # Nested string lists of rank 33-64 crashed TensorFlow's converter (and the process); 65+
    # answered 500: both are refused before any array is built.
    ("POST", PAIR, {"inputs": {"text": NESTED(33)}}, 400, "nested deeper than 32 levels"),
    ("POST", PAIR, {"inputs": {"text": NESTED(100)}}, 400, "nested deeper than 32 levels"),
    ("POST", PAIR, {"instances": [NESTED(32)]}, 400, "has 33 dimensions; at most 32"),
    ("POST", PAIR, {"instances": [NESTED(20)]}, 400, "Input text has shape [1,1,1"),
]


@pytest.mark.parametrize("method,path,body,status,message", BAD_REQUESTS,
                         ids=[f"{r[0]} {r[1]} -> {r[4][:30]}" for r in BAD_REQUESTS])
def test_bad_requests_answer_4xx_with_a_message(server, method, path, body, status, message):
    got, reply, raw = http(server, method, path, body)
    assert got == status, raw
    assert set(reply) == {"error"} and message in reply["error"], reply
    assert http(server, "GET", "/v1/models/toy")[0] == 200  # still serving


def _raw_http(server: ModelServer, request: bytes) -> tuple[int, dict, bytes]:
    """(status, headers, body) of one hand-written HTTP exchange (the server may close first)."""
    import socket

    host, port = server.rest_url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        connection.sendall(request)
        reply = b""
        while b"\r\n\r\n" not in reply:
            chunk = connection.recv(65536)
            if not chunk:
                break
            reply += chunk
        head, _, body = reply.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
        while len(body) < int(headers.get("Content-Length", 0)):
            chunk = connection.recv(65536)
            if not chunk:
                break
            body += chunk
    return int(lines[0].split()[1]), headers, body


def test_oversized_bodies_and_odd_methods_get_json_errors_without_being_read(server):
    from serving.http_server import MAX_BODY_BYTES

    # A declared body of a terabyte, never sent: answered at once, the connection closed.
    status, headers, body = _raw_http(server, (
        b"POST /v1/models/toy:predict HTTP/1.1\r\nHost: x\r\n"
        b"Content-Length: 1000000000000\r\n\r\n{"))
    assert status == 413 and headers["Connection"] == "close"
    assert f"larger than the {MAX_BODY_BYTES} bytes" in json.loads(body)["error"]
    # The same through chunks whose sizes add up past the limit.
    status, _, body = _raw_http(server, (
        b"POST /v1/models/toy:predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"\r\n10\r\n{\"instances\": [\"a\r\n" + f"{MAX_BODY_BYTES:x}".encode() + b"\r\n"))
    assert status == 413 and "larger than" in json.loads(body)["error"]
    # A method the stdlib has no handler for, and a bad request line: JSON, not HTML.
    status, headers, body = _raw_http(server, b"BREW /v1/models/toy HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 501 and headers["Content-Type"] == "application/json"
    assert "BREW" in json.loads(body)["error"]
    status, _, body = _raw_http(server, b"GARBAGE\r\n\r\n")
    assert status == 400 and "error" in json.loads(body)
    # HEAD: the GET answer's status and headers, no body.
    status, headers, body = _raw_http(server, b"HEAD /v1/models/toy HTTP/1.1\r\nHost: x\r\n"
                                              b"Connection: close\r\n\r\n")
    assert status == 200 and int(headers["Content-Length"]) > 0 and body == b""
    assert http(server, "GET", "/v1/models/toy")[0] == 200  # still serving


def test_accepted_connections_send_small_replies_at_once(server):
    """TCP_NODELAY on every accepted connection (Nagle's algorithm would hold a reply back
    until the client's delayed ACK), and the "100 Continue" a client may wait for before
    sending its body is sent at once, though replies are written buffered."""
    host, port = server.rest_url.removeprefix("http://").rsplit(":", 1)
    body = json.dumps({"instances": ["ab"]}).encode()
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        connection.sendall(b"POST /v1/models/toy:predict HTTP/1.1\r\nHost: x\r\n"
                           b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body))
        assert connection.recv(65536).startswith(b"HTTP/1.1 100 Continue\r\n")
        connection.sendall(body)
        reply = b""
        while not reply.endswith(b"}"):
            chunk = connection.recv(65536)
            assert chunk, reply  # the server must not close a keep-alive connection
            reply += chunk
        assert reply.startswith(b"HTTP/1.1 200 OK\r\n")
        # The server's end of this connection, still open (keep-alive).
        accepted = [c for c in list(server._http._busy)
                    if c.getpeername() == connection.getsockname()]
        assert len(accepted) == 1
        assert accepted[0].getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


def _read_replies(connection: socket.socket, count: int) -> list[tuple[int, dict]]:
    """`count` (status, JSON body) replies read in order from a keep-alive connection."""
    buffer, replies = b"", []
    while len(replies) < count:
        while b"\r\n\r\n" not in buffer:
            chunk = connection.recv(65536)
            assert chunk, replies
            buffer += chunk
        head, _, buffer = buffer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        length = next(int(line.split(":")[1]) for line in lines
                      if line.lower().startswith("content-length:"))
        while len(buffer) < length:
            buffer += connection.recv(65536)
        replies.append((int(lines[0].split()[1]), json.loads(buffer[:length])))
        buffer = buffer[length:]
    return replies


def test_pipelined_requests_are_answered_in_order(server, direct):
    """Several requests sent at once on one connection (HTTP/1.1 pipelining, or a client that
    writes its next request early) are answered one after the other, in the order sent."""
    texts = ["ab", "abcd efgh", "x"]
    requests = b""
    for text in texts:
        body = json.dumps({"instances": [text]}).encode()
        requests += (b"POST /v1/models/toy:predict HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(body) + body)
        requests += b"GET /v1/models/nope HTTP/1.1\r\nHost: x\r\n\r\n"
    host, port = server.rest_url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        connection.sendall(requests)
        replies = _read_replies(connection, 2 * len(texts))
    expected = direct(2, "serving_default", text=texts)["scores"]
    for i in range(len(texts)):
        (status, reply), (missing, error) = replies[2 * i], replies[2 * i + 1]
        assert status == 200
        np.testing.assert_array_equal(np.float32(reply["predictions"][0]["scores"]), expected[i])
        assert missing == 404 and "nope" in error["error"]


def test_a_slow_model_call_does_not_hold_up_other_requests(tmp_path):
    """Model calls run off the event loop: while one takes seconds, status requests and quick
    predictions on other connections are answered at once."""
    root = tmp_path / "models"
    layout.export_model(save_slow_model(tmp_path / "src"), root, "slow")
    registry = ModelRegistry.from_base_path("slow", root / "slow")
    with ModelServer(registry, rest_port=0, grpc_port=None, poll_seconds=0) as running:
        with ThreadPoolExecutor(1) as pool:
            slow = pool.submit(http, running, "POST", "/v1/models/slow:predict",
                               {"inputs": {"x": [1.0], "steps": 3000}})  # about 2 s
            deadline = time.monotonic() + 30
            while running.in_flight() == 0:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            start = time.monotonic()
            assert http(running, "GET", "/v1/models/slow")[0] == 200
            quick = http(running, "POST", "/v1/models/slow:predict",
                         {"inputs": {"x": [1.0], "steps": 1}})
            waited = time.monotonic() - start
            assert not slow.done(), "the slow call ended first: the test proves nothing"
            assert quick[0] == 200 and quick[1]["outputs"]["y"] == [3.0]
            assert waited < 1.0, waited
            assert slow.result(timeout=120)[1]["outputs"]["y"] == [3002.0]


def test_a_signature_is_quick_until_a_call_of_it_is_slow(tmp_path):
    """What lets a call run on the event loop: only a signature whose recent calls were all
    quick; one slow call is enough to stop that at once."""
    from serving.models import Servable

    servable = Servable("slow", 1, save_slow_model(tmp_path / "slow"))
    assert not servable.is_quick("")  # never called: unknown
    inputs = {"x": np.float32([1.0]), "steps": np.int32(1)}
    for _ in range(60):  # the first call (with its set-up) is slow: it takes a few dozen
        servable.predict("", inputs)
    assert servable.is_quick("")
    servable.predict("", {**inputs, "steps": np.int32(400)})  # tens of milliseconds
    assert not servable.is_quick("")


def test_concurrent_requests_all_get_their_own_answer(server, direct):
    texts = [f"{'word ' * n}end" for n in range(24)]
    expected = direct(2, "serving_default", text=texts)

    def one(i: int) -> tuple[int, dict]:
        body = {"instances": [texts[i]]} if i % 2 else {"inputs": {"text": [texts[i]]}}
        return i, predict(server, body)

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(one, range(len(texts))))
    for i, reply in results:
        scores = (reply["predictions"][0] if i % 2 else
                  {k: v[0] for k, v in reply["outputs"].items()})["scores"]
        np.testing.assert_array_equal(np.float32(scores), expected["scores"][i])


def test_request_lines_are_logged_with_status_and_time(server, caplog):
    def logged() -> bool:
        return any(r.getMessage().startswith("GET /v1/models/nope 404 ") and
                   r.getMessage().endswith(" ms") for r in caplog.records)

    with caplog.at_level("INFO", logger="opinionrec.serving"):
        http(server, "GET", "/v1/models/nope")
        deadline = time.monotonic() + 5  # the line is written just after the response
        while not logged() and time.monotonic() < deadline:
            time.sleep(0.01)
    assert logged()


# === gRPC, with the official stubs ===


def test_grpc_predict_status_and_metadata(server, direct):
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import (
        get_model_metadata_pb2,
        get_model_status_pb2,
        model_service_pb2_grpc,
        predict_pb2,
        prediction_service_pb2_grpc,
    )

    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "toy"
        request.model_spec.version.value = 1
        request.inputs["text"].CopyFrom(tf.make_tensor_proto(TEXTS))
        response = stub.Predict(request, timeout=30)
        expected = direct(1, "serving_default", text=TEXTS)
        assert response.model_spec.signature_name == "serving_default"
        assert response.model_spec.version.value == 1
        for name, value in expected.items():
            np.testing.assert_array_equal(tf.make_ndarray(response.outputs[name]), value)
        assert list(response.outputs["length"].int_val) == expected["length"].tolist()

        request.output_filter.append("length")
        assert list(stub.Predict(request, timeout=30).outputs) == ["length"]

        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        request.model_spec.name = "toy"
        metadata = stub.GetModelMetadata(request, timeout=30)
        signatures = get_model_metadata_pb2.SignatureDefMap()
        metadata.metadata["signature_def"].Unpack(signatures)
        assert {"serving_default", "pair", "scaled", "length"} <= set(signatures.signature_def)
        assert metadata.model_spec.version.value == 2

        models = model_service_pb2_grpc.ModelServiceStub(channel)
        status = models.GetModelStatus(get_model_status_pb2.GetModelStatusRequest(
            model_spec={"name": "toy"}), timeout=30)
        assert [(s.version, s.state) for s in status.model_version_status] == [
            (2, get_model_status_pb2.ModelVersionStatus.AVAILABLE),
            (1, get_model_status_pb2.ModelVersionStatus.AVAILABLE)]

        bad = predict_pb2.PredictRequest()
        bad.model_spec.name = "nope"
        with pytest.raises(grpc.RpcError) as caught:
            stub.Predict(bad, timeout=30)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        bad.model_spec.name = "toy"
        bad.inputs["text"].CopyFrom(tf.make_tensor_proto([1.0, 2.0]))
        with pytest.raises(grpc.RpcError) as caught:
            stub.Predict(bad, timeout=30)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "expects string" in caught.value.details()

        # A 33-dimension string tensor crashed the process; a declared shape far beyond the
        # values sent (TensorFlow repeats the last) would allocate without bound.
        for dims, message in (([1] * 33, "has 33 dimensions; at most 32"),
                              ([10**9], "elements; at most"), ([2, -1], "negative dimension")):
            bad.inputs["text"].Clear()
            bad.inputs["text"].dtype = tf.string.as_datatype_enum
            bad.inputs["text"].string_val.append(b"a")
            for size in dims:
                bad.inputs["text"].tensor_shape.dim.add(size=size)
            with pytest.raises(grpc.RpcError) as caught:
                stub.Predict(bad, timeout=30)
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, dims
            assert message in caught.value.details()
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "toy"
        request.inputs["text"].CopyFrom(tf.make_tensor_proto(TEXTS))
        assert stub.Predict(request, timeout=30).outputs["length"].int_val  # still serving


# === Model life cycle ===


def test_new_versions_are_picked_up_and_old_ones_unloaded(tmp_path, models_root):
    import shutil

    root = tmp_path / "models"
    shutil.copytree(models_root, root)
    registry = ModelRegistry.from_config_file(root / "models.config")
    with ModelServer(registry, rest_port=0, grpc_port=None, poll_seconds=0) as running:
        layout.export_model(save_toy_model(tmp_path / "src3", 3.0), root, "toy", keep=3)
        registry.refresh()  # what the poll thread does every --poll-seconds
        states = http(running, "GET", "/v1/models/toy")[1]["model_version_status"]
        assert [(s["version"], s["state"]) for s in states] == [
            ("3", "AVAILABLE"), ("2", "AVAILABLE"), ("1", "END")]
        reply = predict(running, {"instances": ["ab"]})
        assert reply["predictions"][0]["scores"] == [6.0, 12.0, 18.0]
        status, reply, _ = http(running, "POST", "/v1/models/toy/versions/1:predict",
                                {"instances": ["ab"]})
        assert status == 404


def test_a_request_past_its_deadline_gets_a_504_and_the_server_goes_on(models_root):
    registry = ModelRegistry.from_config_file(models_root / "models.config")
    with ModelServer(registry, rest_port=0, grpc_port=None, poll_seconds=0,
                     rest_workers=1, rest_timeout_seconds=0.2) as running:
        texts = ["many words to count in each of these texts " * 40] * 20000  # ~1 s or more
        status, reply, _ = http(running, "POST", "/v1/models/toy:predict", {"instances": texts})
        assert status == 504 and reply["error"] == "Deadline exceeded: no answer within 200 ms"
        # The one worker finishes that request in the background, then answers again.
        deadline = time.monotonic() + 120
        while http(running, "POST", "/v1/models/toy:predict", {"instances": ["ab"]})[0] != 200:
            assert time.monotonic() < deadline, "the server never answered again"
            time.sleep(0.5)
        metrics = urllib.request.urlopen(running.rest_url + "/monitoring/prometheus/metrics",
                                         timeout=30).read().decode()
        assert ':tensorflow:serving:request_count{model_name="toy",' \
               'status="DEADLINE_EXCEEDED"} ' in metrics  # the first and any polls after it


def test_requests_waiting_for_a_busy_worker_get_their_own_504(tmp_path):
    """The one worker slot is taken by a slow request, handled on its connection's thread:
    its 504 comes from the deadline thread, with `Connection: close` (a next request on that
    connection would wait unread behind the model call). A request that arrives meanwhile
    waits its turn on the pool and gets its own 504; once the slot is free, requests are
    answered again."""
    root = tmp_path / "models"
    layout.export_model(save_slow_model(tmp_path / "src"), root, "slow")
    registry = ModelRegistry.from_base_path("slow", root / "slow")
    with ModelServer(registry, rest_port=0, grpc_port=None, poll_seconds=0,
                     rest_workers=1, rest_timeout_seconds=0.3) as running:
        host, port = running.rest_url.removeprefix("http://").rsplit(":", 1)
        slow = HTTPConnection(host, int(port), timeout=120)
        slow.request("POST", "/v1/models/slow:predict",
                     json.dumps({"inputs": {"x": [1.0], "steps": 3000}}))  # about 2 s
        response = slow.getresponse()
        assert response.status == 504 and response.headers["Connection"] == "close"
        assert json.loads(response.read()) == {
            "error": "Deadline exceeded: no answer within 300 ms"}
        slow.close()
        quick = {"inputs": {"x": [1.0], "steps": 1}}
        status, reply, _ = http(running, "POST", "/v1/models/slow:predict", quick)
        assert status == 504 and reply["error"] == "Deadline exceeded: no answer within 300 ms"
        deadline = time.monotonic() + 120
        while (answer := http(running, "POST", "/v1/models/slow:predict", quick))[0] != 200:
            assert time.monotonic() < deadline, "the server never answered again"
            time.sleep(0.2)
        assert answer[1]["outputs"]["y"] == [3.0]  # 2 x + steps


def test_a_version_that_fails_to_load_is_reported_not_fatal(tmp_path, models_root):
    import shutil

    base = tmp_path / "toy"
    shutil.copytree(models_root / "toy" / "2", base / "2")
    (base / "3").mkdir()
    (base / "3" / "saved_model.pb").write_bytes(b"not a SavedModel")
    registry = ModelRegistry.from_base_path("toy", base)
    registry.refresh()
    (state,) = registry.status("toy")
    assert state.version == 3 and state.state == "END" and state.error_code != "OK"
    assert "Failed to load toy version 3" in state.error_message
    with pytest.raises(Exception, match="Servable not found"):
        registry.get("toy")


def test_a_version_caught_half_copied_is_retried_and_loads_once_complete(tmp_path, models_root):
    import shutil

    base = tmp_path / "toy"
    (base / "3").mkdir(parents=True)
    (base / "3" / "saved_model.pb").write_bytes(b"half a SavedModel")
    registry = ModelRegistry.from_base_path("toy", base, max_load_retries=2,
                                            load_retry_interval=0)
    registry.refresh()
    assert registry.status("toy")[0].failed_loads == 1
    shutil.rmtree(base / "3")
    shutil.copytree(models_root / "toy" / "2", base / "3")  # the copy has finished
    registry.refresh()
    (state,) = registry.status("toy")
    assert (state.state, state.error_code, state.failed_loads) == ("AVAILABLE", "OK", 0)
    assert registry.get("toy").version == 3

    # Retries are counted: a version still broken after them stays failed...
    (base / "4").mkdir()
    (base / "4" / "saved_model.pb").write_bytes(b"still broken")
    for _ in range(5):
        registry.refresh()
    assert registry.status("toy", 4)[0].failed_loads == 3  # the first load and 2 retries
    assert registry.get("toy").version == 3  # and the good version keeps serving
    # ...until its folder is taken away and put back, which starts afresh.
    shutil.rmtree(base / "4")
    registry.refresh()
    shutil.copytree(models_root / "toy" / "2", base / "4")
    registry.refresh()
    assert registry.get("toy").version == 4


def test_config_base_paths_under_slash_models_resolve_next_to_the_config(models_root):
    from serving.models import resolve_base_path

    assert resolve_base_path("/models/toy", models_root) == (models_root / "toy").resolve()
    assert resolve_base_path("toy", models_root) == (models_root / "toy").resolve()
    assert resolve_base_path(str(models_root / "toy"), Path("/elsewhere")) == models_root / "toy"


def test_serve_command_runs_until_sigterm(models_root, tmp_path):
    port_file = tmp_path / "ports.json"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    process = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "serve", "--models-config",
         str(models_root / "models.config"), "--rest-port", "auto", "--grpc-port", "0",
         "--port-file", str(port_file)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 90
        while not port_file.exists():
            assert process.poll() is None, process.stdout.read()
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.2)
        ports = json.loads(port_file.read_text())
        assert ports["grpc_port"] is None and ports["rest_url"].startswith("http://127.0.0.1:")
        with urllib.request.urlopen(ports["rest_url"] + "/v1/models/toy", timeout=10) as reply:
            assert b"AVAILABLE" in reply.read()
        # The `words` signature runs a TF Text op: the server registered TF Text's kernels.
        request = urllib.request.Request(
            ports["rest_url"] + "/v1/models/toy:predict",
            data=json.dumps({"signature_name": "words", "instances": ["a b c"]}).encode())
        with urllib.request.urlopen(request, timeout=10) as reply:
            assert json.loads(reply.read()) == {"predictions": [["a", "b", "c", ""]]}
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        output = process.stdout.read()
        assert "curl " in output and "GET /v1/models/toy 200" in output and "stopping" in output
    finally:
        if process.poll() is None:
            process.kill()


def test_prometheus_metrics_count_requests_by_model_status_and_signature(server):
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    def scrape() -> dict[str, float]:
        request = urllib.request.Request(server.rest_url + "/monitoring/prometheus/metrics")
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            text = response.read().decode()
        return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
                for line in text.splitlines() if line and not line.startswith("#")}

    before = scrape()
    predict(server, {"instances": ["a"]})
    predict(server, {"signature_name": "length", "instances": ["a", "b"]},
            "/v1/models/toy/versions/1:predict")
    http(server, "POST", "/v1/models/toy:predict", {"instances": [1]})  # a 400
    with grpc.insecure_channel(server.grpc_target) as channel:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "toy"
        request.inputs["text"].CopyFrom(tf.make_tensor_proto(TEXTS))
        prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=30)
    after = scrape()

    def grew(key: str) -> float:
        return after.get(key, 0.0) - before.get(key, 0.0)

    count = ':tensorflow:serving:request_count{model_name="toy",status="%s"}'
    assert grew(count % "OK") == 3 and grew(count % "INVALID_ARGUMENT") == 1
    latency = ':tensorflow:serving:request_latency_count{model_name="toy",API="predict",' \
              'entrypoint="%s"}'
    assert grew(latency % "REST") == 3 and grew(latency % "GRPC") == 1
    inf = ':tensorflow:serving:request_latency_bucket{model_name="toy",API="predict",' \
          'entrypoint="REST",le="+Inf"}'
    assert after[inf] == after[latency % "REST"]  # cumulative buckets end at the count
    by_signature = (':opinionrec:serving:request_latency_by_signature_count{model_name="toy",'
                    'model_version="%d",signature_name="%s"}')
    assert grew(by_signature % (1, "length")) == 1
    assert grew(by_signature % (2, "serving_default")) == 3  # REST, the 400 and gRPC


# === Fuzzing: no request of any shape kills the server or gets a 5xx ===

def _random_json(rng, depth: int = 0):
    """A random JSON value: scalars of every type, nulls, objects, lists (ragged or not)."""
    kind = rng.integers(0, 9 if depth < 6 else 5)
    if kind == 0:
        return None
    if kind == 1:
        return bool(rng.integers(0, 2))
    if kind == 2:
        return int(rng.choice([0, -1, 2**31, 2**63 + 5, -(2**70)]))
    if kind == 3:
        return float(rng.choice([0.5, 1e308, -1e-320, 16777217.0]))
    if kind == 4:
        return rng.choice(["", "a", "é€𝄞", "\x00", "x" * 300])
    if kind == 5:
        return {"b64": rng.choice(["YQ==", "***", "", "YWJj"])}
    if kind == 6:
        return {str(rng.choice(["text", "weight", "x", "k", "b64", "zzz"])): _random_json(rng, depth + 1)
                for _ in range(rng.integers(0, 3))}
    return [_random_json(rng, depth + 1) for _ in range(rng.integers(0, 4))]


def _nested(depth: int, leaf) -> object:
    for _ in range(depth):
        leaf = [leaf]
    return leaf


def _fuzz_bodies(rng, count: int) -> list:
    bodies: list = [b"\xff\xfe\x00bad utf-8", b"{\"instances\": [\"\xff\"]}", b"null", b"[]",
                    b"{}", b"{\"instances\": null}", b"{\"inputs\": null}", b"1e999999"]
    for depth in range(0, 101, 3):  # nesting depth 0-100, for both formats and a few leaves
        for leaf in ("a", 1, None, {"b64": "YQ=="}):
            bodies.append({"inputs": {"text": _nested(depth, leaf)}})
            bodies.append({"instances": [_nested(depth, leaf)]})
    signatures = ["serving_default", "pair", "scaled", "length", "words", "nope", 7, None]
    while len(bodies) < count:
        body = {}
        if rng.random() < 0.7:
            body["signature_name"] = signatures[rng.integers(0, len(signatures))]
        key = "instances" if rng.random() < 0.5 else "inputs"
        body[key] = _random_json(rng)
        if rng.random() < 0.3:  # ragged and mixed lists
            body[key] = [[1, 2], [3], "a", [[4]]][: rng.integers(1, 5)]
        bodies.append(body)
    return bodies


def test_fuzzed_rest_requests_never_kill_the_server_or_get_a_5xx(server):
    rng = np.random.default_rng(0)
    good = {"instances": ["still here"]}
    answered = {}
    for body in _fuzz_bodies(rng, 400):
        status, reply, raw = http(server, "POST", "/v1/models/toy:predict", body)
        assert status < 500, (body if len(str(body)) < 500 else str(body)[:500], raw[:300])
        assert set(reply) == ({"error"} if status >= 400 else set(reply)), raw[:300]
        answered[status] = answered.get(status, 0) + 1
        assert predict(server, good)["predictions"]  # and a good request right after
    assert answered.get(400, 0) > 300, answered  # nearly all of them are malformed


def test_fuzzed_grpc_tensors_never_kill_the_server_or_get_an_internal_error(server):
    import grpc
    import tensorflow as tf
    from tensorflow.core.framework import types_pb2
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    rng = np.random.default_rng(1)
    dtypes = [types_pb2.DT_STRING, types_pb2.DT_FLOAT, types_pb2.DT_INT32, types_pb2.DT_INT64,
              types_pb2.DT_BOOL, types_pb2.DT_HALF, types_pb2.DT_COMPLEX64, types_pb2.DT_INVALID,
              types_pb2.DT_RESOURCE, types_pb2.DT_VARIANT]
    good = predict_pb2.PredictRequest()
    good.model_spec.name = "toy"
    good.inputs["text"].CopyFrom(tf.make_tensor_proto(TEXTS))
    codes = {}
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        for i in range(150):
            request = predict_pb2.PredictRequest()
            request.model_spec.name = "toy"
            request.model_spec.signature_name = str(rng.choice(["", "pair", "scaled", "nope"]))
            name = str(rng.choice(["text", "weight", "x", "k", "other"]))
            tensor = request.inputs[name]
            tensor.dtype = int(rng.choice(dtypes))
            for _ in range(int(rng.choice([0, 1, 2, 3, 33, 40, 70]))):
                tensor.tensor_shape.dim.add(size=int(rng.choice([0, 1, 2, 3, -1, 10**12])))
            if rng.random() < 0.2:
                tensor.tensor_shape.unknown_rank = True
            values = int(rng.integers(0, 4))
            tensor.string_val.extend([b"\xff\xfe", b"a", b""][:values])
            tensor.float_val.extend([1.5, float("nan")][: values % 3])
            tensor.int_val.extend([2**31 - 1, -5][: values % 3])
            if rng.random() < 0.2:
                tensor.tensor_content = bytes(rng.integers(0, 256, int(rng.integers(0, 17)),
                                                           dtype=np.uint8))
            try:
                stub.Predict(request, timeout=30)
                code = grpc.StatusCode.OK
            except grpc.RpcError as error:
                code = error.code()
            assert code not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN,
                                grpc.StatusCode.UNAVAILABLE), (i, request, code)
            codes[code] = codes.get(code, 0) + 1
            assert stub.Predict(good, timeout=30).outputs["length"].int_val
    assert codes.get(grpc.StatusCode.INVALID_ARGUMENT, 0) > 100, codes
