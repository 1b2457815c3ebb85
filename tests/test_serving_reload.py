"""Model config reloads as TF Serving does them: gRPC `HandleReloadConfigRequest` over real
loopback gRPC with the official stubs, and a models.config re-read every few tenths of a second."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Callable

import pytest

from serving import layout
from serving.models import ModelRegistry
from serving.server import ModelServer
from serving.testing import save_toy_model

# The toy model's scores for the text "ab": its length (2) times scale * [1, 2, 3].
SCORES = {1.0: [2.0, 4.0, 6.0], 3.0: [6.0, 12.0, 18.0]}


@pytest.fixture(scope="module")
def models_root(tmp_path_factory) -> Path:
    """`toy` (scale 1) and `other` (scale 3), one version each."""
    tmp = tmp_path_factory.mktemp("reload")
    root = tmp / "models"
    for name, scale in (("toy", 1.0), ("other", 3.0)):
        layout.export_model(save_toy_model(tmp / f"src_{name}", scale), root, name)
    return root


def config_proto(**base_paths: Path | str):
    """A ModelServerConfig serving each name from its base path."""
    from tensorflow_serving.config import model_server_config_pb2

    config = model_server_config_pb2.ModelServerConfig()
    for name, path in base_paths.items():
        config.model_config_list.config.add(name=name, base_path=str(path),
                                            model_platform="tensorflow")
    return config


def write_config(path: Path, **base_paths: Path | str) -> Path:
    """Write a models.config atomically, as an editor or a deployment tool would replace it."""
    from google.protobuf import text_format

    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text_format.MessageToString(config_proto(**base_paths)))
    temporary.replace(path)
    return path


def reload(channel, config):
    from tensorflow_serving.apis import model_management_pb2, model_service_pb2_grpc

    request = model_management_pb2.ReloadConfigRequest(config=config)
    return model_service_pb2_grpc.ModelServiceStub(channel).HandleReloadConfigRequest(
        request, timeout=120)


def scores(channel, name: str) -> list[float]:
    """The `scores` a model gives the text "ab" over gRPC Predict."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.inputs["text"].CopyFrom(tf.make_tensor_proto(["ab"]))
    response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request,
                                                                                  timeout=30)
    return tf.make_ndarray(response.outputs["scores"])[0].tolist()


def rpc_error(call: Callable[[], object]):
    import grpc

    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value.code(), caught.value.details()


def wait_until(condition: Callable[[], bool], seconds: float = 60, what: str = "") -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what or condition}"
        time.sleep(0.05)


class Hammer:
    """Predicts on one model from a thread until stopped; counts the answers and failures, so a
    test can show the model served without a gap meanwhile."""

    def __init__(self, channel, name: str) -> None:
        self.answers, self.failures = 0, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(channel, name))
        self._thread.start()

    def _run(self, channel, name: str) -> None:
        while not self._stop.is_set():
            try:
                scores(channel, name)
                self.answers += 1
            except Exception as error:  # noqa: BLE001  any failure is what the test looks for
                self.failures.append(error)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def test_reload_over_grpc_adds_moves_and_removes_models(models_root, tmp_path):
    import grpc
    from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

    config = write_config(tmp_path / "models.config", toy=models_root / "toy")
    registry = ModelRegistry.from_config_file(config)
    with ModelServer(registry, rest_port=None, grpc_port=0, poll_seconds=0) as server, \
            grpc.insecure_channel(server.grpc_target) as channel:
        hammer = Hammer(channel, "toy")
        # Add a model: it answers; toy answers on, without a gap.
        response = reload(channel, config_proto(toy=models_root / "toy",
                                                other=models_root / "other"))
        assert response.HasField("status") and response.status.error_code == 0
        assert scores(channel, "other") == SCORES[3.0]
        assert scores(channel, "toy") == SCORES[1.0]
        # Move toy to another base path: it is served from there, still without a gap.
        reload(channel, config_proto(toy=models_root / "other", other=models_root / "other"))
        assert scores(channel, "toy") == SCORES[3.0]
        hammer.stop()
        assert hammer.failures == [] and hammer.answers > 0

        # Remove toy: its requests are NOT_FOUND, the other model answers on.
        reload(channel, config_proto(other=models_root / "other"))
        assert rpc_error(lambda: scores(channel, "toy")) == (
            grpc.StatusCode.NOT_FOUND, "Servable not found for request: Latest(toy)")
        status = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus
        request = get_model_status_pb2.GetModelStatusRequest(model_spec={"name": "toy"})
        assert rpc_error(lambda: status(request, timeout=30))[0] == grpc.StatusCode.NOT_FOUND
        assert scores(channel, "other") == SCORES[3.0]
        assert registry.available() == {"other": [1]}


def test_an_invalid_config_is_refused_and_changes_nothing(models_root, tmp_path):
    import grpc
    from tensorflow_serving.config import model_server_config_pb2

    registry = ModelRegistry.from_base_path("toy", models_root / "toy")  # no config folder
    duplicate = config_proto(toy=models_root / "toy")
    duplicate.model_config_list.config.add(name="toy", base_path=str(models_root / "other"))
    custom = model_server_config_pb2.ModelServerConfig()
    custom.custom_model_config.Pack(model_server_config_pb2.ModelServerConfig())
    refused = [
        (duplicate, "Illegal to list model toy multiple times in config list"),
        (config_proto(toy=models_root / "toy", other=tmp_path / "nowhere"),
         f"Could not find base path {tmp_path / 'nowhere'} for servable other"),
        (config_proto(toy=models_root / "toy", other=""),
         "Expected model other to have an absolute path or URI; got base_path()="),
        (config_proto(toy=models_root / "toy", other="other"),
         "Expected model other to have an absolute path or URI; got base_path()=other"),
        (custom, "only ModelConfigList is currently supported"),
    ]
    with ModelServer(registry, rest_port=None, grpc_port=0, poll_seconds=0) as server, \
            grpc.insecure_channel(server.grpc_target) as channel:
        for config, message in refused:
            code, details = rpc_error(lambda config=config: reload(channel, config))
            assert code == grpc.StatusCode.INVALID_ARGUMENT and message in details, details
            assert scores(channel, "toy") == SCORES[1.0]
            assert list(registry.sources) == ["toy"]
        # An empty config is no change, as in TF Serving.
        assert reload(channel, model_server_config_pb2.ModelServerConfig()).status.error_code == 0
        assert registry.available() == {"toy": [1]}

        # A new model that cannot load: applied, and reported as TF Serving reports it.
        (tmp_path / "broken" / "1").mkdir(parents=True)
        (tmp_path / "broken" / "1" / "saved_model.pb").write_bytes(b"not a SavedModel")
        code, details = rpc_error(lambda: reload(channel, config_proto(
            toy=models_root / "toy", broken=tmp_path / "broken")))
        assert code == grpc.StatusCode.UNKNOWN
        assert details.startswith("1 model(s) did not become available: {broken: Failed to load "
                                  "broken version 1"), details
        assert scores(channel, "toy") == SCORES[1.0]


def test_a_rewritten_models_config_is_applied_and_a_malformed_one_ignored(
        models_root, tmp_path, caplog):
    import grpc

    caplog.set_level(logging.INFO, logger="opinionrec.serving")
    config = write_config(tmp_path / "models.config", toy=models_root / "toy")
    registry = ModelRegistry.from_config_file(config)
    with ModelServer(registry, rest_port=None, grpc_port=0, poll_seconds=0,
                     config_poll_seconds=0.1) as server, \
            grpc.insecure_channel(server.grpc_target) as channel:
        write_config(config, toy=models_root / "toy", other=models_root / "other")
        wait_until(lambda: registry.available().get("other") == [1], what="the added model")
        assert scores(channel, "other") == SCORES[3.0]

        config.write_text('model_config_list { config { name: "toy" base_path: ')  # cut short
        wait_until(lambda: "not applied, serving on as before" in caplog.text)
        time.sleep(0.5)  # several more polls of the same file
        assert caplog.text.count("not applied, serving on as before") == 1  # logged once
        assert scores(channel, "toy") == SCORES[1.0] and scores(channel, "other") == SCORES[3.0]

        write_config(config, other=models_root / "other")
        wait_until(lambda: "toy" not in registry.available(), what="toy to be removed")
        assert rpc_error(lambda: scores(channel, "toy"))[0] == grpc.StatusCode.NOT_FOUND
        assert scores(channel, "other") == SCORES[3.0]


def test_config_polling_needs_a_models_config(models_root):
    registry = ModelRegistry.from_base_path("toy", models_root / "toy")
    with pytest.raises(ValueError, match="needs a registry made from a models.config"):
        ModelServer(registry, rest_port=0, grpc_port=None, config_poll_seconds=1.0)
