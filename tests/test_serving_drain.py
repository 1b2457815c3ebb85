"""Graceful shutdown: requests already received when `stop()` (or SIGTERM) comes are answered, over
REST and gRPC at once and within one grace period; new connections are refused; idle keep-alive
connections are closed. A slow model (`save_slow_model`) keeps requests in flight."""

from __future__ import annotations

import http.client
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from serving import layout
from serving.models import ModelRegistry
from serving.server import ModelServer
from serving.testing import save_slow_model

REPO = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
# Matrix products per slow request: about 2 s on one core (two at once share the 2 test cores).
STEPS = 3000


@pytest.fixture(scope="module")
def models_root(tmp_path_factory) -> Path:
    """`slow` (one version) and a models.config serving it."""
    tmp = tmp_path_factory.mktemp("drain")
    root = tmp / "models"
    layout.export_model(save_slow_model(tmp / "src"), root, "slow")
    layout.write_models_config(root)
    return root


def start_server(models_root: Path, **options) -> ModelServer:
    registry = ModelRegistry.from_config_file(models_root / "models.config")
    return ModelServer(registry, host=HOST, rest_port=0, grpc_port=0, poll_seconds=0,
                       **options).start()


def rest_predict(port: int, x: list[float], steps: int) -> tuple[int, dict, dict]:
    """(status, headers, JSON body) of a columnar :predict to `slow` on a new connection."""
    connection = http.client.HTTPConnection(HOST, port, timeout=120)
    try:
        connection.request("POST", "/v1/models/slow:predict",
                           body=json.dumps({"inputs": {"x": x, "steps": steps}}))
        response = connection.getresponse()
        return response.status, dict(response.headers), json.loads(response.read())
    finally:
        connection.close()


def grpc_predict(target: str, x: list[float], steps: int) -> np.ndarray:
    """`y` of a gRPC Predict to `slow` on a new channel."""
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    request = predict_pb2.PredictRequest()
    request.model_spec.name = "slow"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.float32(x)))
    request.inputs["steps"].CopyFrom(tf.make_tensor_proto(np.int32(steps)))
    with grpc.insecure_channel(target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        return tf.make_ndarray(stub.Predict(request, timeout=120).outputs["y"])


def timed(call: Callable[..., object], *args: object) -> tuple[object, float]:
    """`call(*args)` and the time.monotonic() at which it returned."""
    result = call(*args)
    return result, time.monotonic()


def refused(port: int) -> bool:
    try:
        socket.create_connection((HOST, port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    except (TimeoutError, ConnectionResetError):
        pass  # the listener is closing under this connection: try again
    return False


def wait_until(condition: Callable[[], bool], seconds: float = 30, what: str = "") -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what or condition}"
        time.sleep(0.02)


def test_stop_answers_the_requests_in_flight_and_refuses_new_ones(models_root, caplog):
    import grpc

    caplog.set_level(logging.INFO, logger="opinionrec.serving")
    server = start_server(models_root, drain_seconds=60)
    port, target = server.rest_port, server.grpc_target
    with ThreadPoolExecutor(3) as pool:
        rest = pool.submit(timed, rest_predict, port, [1.0, 2.0], 2 * STEPS)  # the slower one
        rpc = pool.submit(timed, grpc_predict, target, [3.0], STEPS)
        wait_until(lambda: server.in_flight() == 2, what="two requests in flight")
        stopping = pool.submit(timed, server.stop)
        wait_until(lambda: refused(port), what="the REST listener to close")
        assert not rest.done() and not rpc.done()  # still being answered
        with pytest.raises(grpc.RpcError) as caught:
            grpc_predict(target, [1.0], 1)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        (status, headers, body), rest_answered = rest.result(timeout=120)
        y, rpc_answered = rpc.result(timeout=120)
        _, stopped = stopping.result(timeout=120)
    # Both were answered by the time stop() returned (give or take a client thread's wake-up).
    assert max(rest_answered, rpc_answered) < stopped + 0.5
    assert status == 200, body
    assert headers["Connection"] == "close"
    assert body["outputs"]["y"] == [2.0 + 2 * STEPS, 4.0 + 2 * STEPS]
    assert y.tolist() == [6.0 + STEPS]
    messages = [record.getMessage() for record in caplog.records]
    assert messages.index("draining 2 in-flight requests (at most 60 s)") < messages.index(
        "stopped")


def test_idle_keep_alive_connections_are_closed_without_waiting(models_root):
    server = start_server(models_root, drain_seconds=60)
    connection = http.client.HTTPConnection(HOST, server.rest_port, timeout=10)
    connection.request("GET", "/v1/models/slow")
    assert connection.getresponse().read()  # the connection stays open (HTTP/1.1 keep-alive)
    start = time.monotonic()
    server.stop()
    assert time.monotonic() - start < 5  # not the 60 s grace: nothing was in flight
    assert connection.sock.recv(1) == b""  # closed by the server
    connection.close()


def test_rest_and_grpc_drain_within_one_grace_period(models_root, caplog):
    import grpc

    caplog.set_level(logging.INFO, logger="opinionrec.serving")
    server = start_server(models_root, drain_seconds=1.0)
    with ThreadPoolExecutor(2) as pool:
        rest = pool.submit(rest_predict, server.rest_port, [1.0], STEPS)
        rpc = pool.submit(grpc_predict, server.grpc_target, [1.0], STEPS)
        wait_until(lambda: server.in_flight() == 2, what="two requests in flight")
        start = time.monotonic()
        server.stop()
        elapsed = time.monotonic() - start
        # One after the other would take two grace periods.
        assert 0.9 < elapsed < 1.8, elapsed
        with pytest.raises(grpc.RpcError):  # cancelled once the grace period is over
            rpc.result(timeout=120)
        rest.result(timeout=120)  # let the model call finish before the next test
    assert "1 REST requests still unanswered after 1 s" in caplog.text


def test_serve_command_drains_on_sigterm_and_applies_a_rewritten_config(models_root, tmp_path):
    """`opinionrec serve --model-config-file-poll-wait-seconds ... --drain-seconds ...`: a second
    model appears when models.config lists it; SIGTERM with a request in flight answers it."""
    config = tmp_path / "models.config"
    config.write_text(config_text(slow=models_root / "slow"))
    port_file = tmp_path / "ports.json"
    process = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "serve", "--models-config", str(config),
         "--rest-port", "auto", "--grpc-port", "0", "--port-file", str(port_file),
         "--poll-seconds", "0", "--model-config-file-poll-wait-seconds", "0.2",
         "--drain-seconds", "60"],
        cwd=REPO, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )
    try:
        wait_until(lambda: port_file.exists() or process.poll() is not None, 90, "the server")
        assert process.poll() is None, process.stdout.read()
        port = json.loads(port_file.read_text())["rest_port"]
        config.write_text(config_text(slow=models_root / "slow", again=models_root / "slow"))
        wait_until(lambda: _status(port, "again") == 200, 60, "the second model")

        with ThreadPoolExecutor(1) as pool:
            rest = pool.submit(rest_predict, port, [5.0], 2 * STEPS)
            time.sleep(1.0)  # received, and seconds from answered
            process.send_signal(signal.SIGTERM)
            wait_until(lambda: refused(port), what="the REST listener to close")
            assert not rest.done()
            status, headers, body = rest.result(timeout=120)
        assert (status, headers["Connection"]) == (200, "close")
        assert body["outputs"]["y"] == [10.0 + 2 * STEPS]
        assert process.wait(timeout=60) == 0
        output = process.stdout.read()
        assert "draining 1 in-flight requests" in output and "stopped" in output
    finally:
        if process.poll() is None:
            process.kill()
            print(process.communicate()[0])  # shown with the failure


def config_text(**base_paths: Path) -> str:
    """A text-format ModelServerConfig serving each name from its base path."""
    entries = " ".join(f'config {{ name: "{name}" base_path: "{path}" }}'
                       for name, path in base_paths.items())
    return f"model_config_list {{ {entries} }}"


def _status(port: int, name: str) -> int:
    connection = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        connection.request("GET", f"/v1/models/{name}")
        return connection.getresponse().status
    finally:
        connection.close()
