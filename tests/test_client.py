"""ServingClient (REST) and GrpcClient against the local server."""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest

from serving import layout
from serving.client import GrpcClient, ServingClient, ServingError, b64
from serving.models import ModelRegistry
from serving.server import ModelServer
from serving.testing import save_toy_model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("client")
    layout.export_model(save_toy_model(tmp / "src"), tmp / "models", "toy")
    layout.write_models_config(tmp / "models")
    return tmp / "models" / "toy" / "1"


@pytest.fixture(scope="module")
def server(model_dir):
    registry = ModelRegistry.from_config_file(model_dir.parents[1] / "models.config")
    with ModelServer(registry, rest_port=0, grpc_port=0, poll_seconds=0) as running:
        yield running


@pytest.fixture(scope="module")
def expected(model_dir):
    import tensorflow as tf

    model = tf.saved_model.load(str(model_dir))

    def call(signature: str, **inputs) -> dict[str, np.ndarray]:
        outputs = model.signatures[signature](**{k: tf.constant(v) for k, v in inputs.items()})
        return {k: v.numpy() for k, v in outputs.items()}

    return call


def test_status_and_metadata(server):
    client = ServingClient(server.rest_url)
    assert client.status("toy")["model_version_status"][0]["state"] == "AVAILABLE"
    assert client.status("toy", version=1)["model_version_status"][0]["version"] == "1"
    metadata = client.metadata("toy")
    assert metadata["model_spec"]["name"] == "toy"
    assert "pair" in metadata["metadata"]["signature_def"]["signature_def"]
    assert client.wait_until_available("toy", timeout=5)["model_version_status"]


def test_predict_row_and_columnar(server, expected):
    client = ServingClient(server.rest_url)
    texts = ["great battery", "poor sound quality"]
    want = expected("serving_default", text=texts)
    rows = client.predict("toy", instances=texts)["predictions"]
    assert [r["length"] for r in rows] == want["length"].tolist()
    outputs = client.predict("toy", inputs={"text": texts}, version=1)["outputs"]
    np.testing.assert_array_equal(np.float32(outputs["scores"]), want["scores"])
    single = client.predict("toy", instances=texts, signature_name="length")
    assert single == {"predictions": want["length"].tolist()}


def test_predict_converts_numpy_and_bytes(server, expected):
    client = ServingClient(server.rest_url)
    weights = np.float32([0.25, 4.0])
    want = expected("pair", text=[b"\x00bin", b"ok"], weight=weights)
    outputs = client.predict("toy", signature_name="pair",
                             inputs={"text": [b"\x00bin", b64(b"ok")], "weight": weights})
    np.testing.assert_array_equal(np.float32(outputs["outputs"]["weighted"]), want["weighted"])
    scaled = client.predict("toy", signature_name="scaled",
                            inputs={"x": np.ones((2, 3), np.float32), "k": np.int32(2)})
    assert scaled["outputs"]["total"] == 12.0


def test_errors_raise_serving_error_with_status_and_message(server):
    client = ServingClient(server.rest_url)
    with pytest.raises(ServingError) as caught:
        client.predict("nope", instances=["a"])
    assert caught.value.status == 404
    assert caught.value.message == "Servable not found for request: Latest(nope)"
    with pytest.raises(ServingError) as caught:
        client.predict("toy", instances=[1])
    assert caught.value.status == 400 and "is not of expected type" in caught.value.message
    with pytest.raises(ServingError, match="Unrecognized servable version label"):
        client.status("toy", label="canary")
    with pytest.raises(ValueError, match="exactly one"):
        client.predict("toy", instances=["a"], inputs=["a"])
    with pytest.raises(ValueError, match="not both"):
        client.status("toy", version=1, label="stable")


def test_model_names_are_quoted_in_paths():
    client = ServingClient("http://127.0.0.1:1/")
    assert client._model_path("a b/c", None, None) == "/v1/models/a%20b%2Fc"
    assert client._model_path("m", 3, None) == "/v1/models/m/versions/3"
    assert client._model_path("m", None, "stable") == "/v1/models/m/labels/stable"


def test_unreachable_server_raises_oserror():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound but not listening: refused
        client = ServingClient(f"http://127.0.0.1:{port}", timeout=2)
        with pytest.raises(OSError):
            client.status("toy")
        with pytest.raises(TimeoutError):
            client.wait_until_available("toy", timeout=0.5, interval=0.1)


def test_grpc_client(server, expected):
    texts = ["great battery", "ok"]
    with GrpcClient(server.grpc_target) as client:
        outputs = client.predict("toy", {"text": texts})
        for name, value in expected("serving_default", text=texts).items():
            np.testing.assert_array_equal(outputs[name], value)
        # Lists are cast to the signature's dtypes (here a Python int to int32).
        scaled = client.predict("toy", {"x": [[1.0, 2.0, 3.0]], "k": 2}, signature_name="scaled",
                                output_filter=["total"])
        assert list(scaled) == ["total"] and float(scaled["total"]) == 12.0
        assert client.status("toy").model_version_status[0].version == 1
        assert "serving_default" in client.metadata("toy").signature_def
        with pytest.raises(ServingError) as caught:
            client.predict("nope", {"text": texts})
        assert caught.value.code == "NOT_FOUND" and caught.value.status == 404
