"""Clients for TF Serving's REST and gRPC APIs (real TF Serving or `opinionrec serve`).

`ServingClient` uses only the documented REST API and the standard library (`urllib`), so the same
code talks to `tensorflow_model_server` and to the local server:

    client = ServingClient("http://127.0.0.1:8501")
    client.status("text_features")          # {"model_version_status": [...]}
    client.predict("text_features", instances=["great battery"])   # {"predictions": [...]}
    client.predict("recommender", inputs={"user_id": ["u1"], "k": 5}, signature_name="recommend")

Errors come back as `ServingError(status, message)` with the server's `{"error": ...}` text.
`GrpcClient` does the same over gRPC with the official `tensorflow_serving.apis` stubs.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from typing import Any, Mapping, Sequence
from urllib.parse import quote

from serving.status import HTTP_STATUS


class ServingError(Exception):
    """A request the server refused: the HTTP status (for gRPC: that of the gRPC code) and the
    server's error message."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.code = code


def b64(data: bytes) -> dict[str, str]:
    """A binary value for a JSON request: `{"b64": "<base64>"}`."""
    return {"b64": base64.b64encode(data).decode("ascii")}


def _jsonable(value: Any) -> Any:
    """numpy arrays and scalars as lists and numbers, bytes as `{"b64": ...}`."""
    if isinstance(value, bytes):
        return b64(value)
    if hasattr(value, "tolist"):
        return _decode_bytes(value.tolist())
    raise TypeError(f"Cannot write {type(value).__name__} as JSON")


def _decode_bytes(value: Any) -> Any:
    if isinstance(value, bytes):
        return b64(value)
    if isinstance(value, list):
        return [_decode_bytes(v) for v in value]
    return value


class ServingClient:
    """TF Serving REST client.

    Args:
        base_url: the server's REST address, e.g. `http://127.0.0.1:8501`.
        timeout: seconds to wait for each response.
    """

    def __init__(self, base_url: str = "http://127.0.0.1:8501", timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def status(self, model: str, version: int | None = None, label: str | None = None) -> dict:
        """`GET /v1/models/{model}[/versions/{v}|/labels/{l}]`."""
        return self._request("GET", self._model_path(model, version, label))

    def metadata(self, model: str, version: int | None = None, label: str | None = None) -> dict:
        """`GET /v1/models/{model}[...]/metadata`: model_spec and signature defs."""
        return self._request("GET", self._model_path(model, version, label) + "/metadata")

    def predict(
        self,
        model: str,
        instances: Sequence[Any] | None = None,
        inputs: Any = None,
        signature_name: str | None = None,
        version: int | None = None,
        label: str | None = None,
    ) -> dict:
        """`POST .../{model}:predict` with `instances` (row format: answer `{"predictions"}`) or
        `inputs` (columnar: answer `{"outputs"}`). numpy values and bytes are converted."""
        if (instances is None) == (inputs is None):
            raise ValueError("Give exactly one of `instances` (row format) or `inputs` (columnar).")
        body: dict[str, Any] = {}
        if signature_name:
            body["signature_name"] = signature_name
        if instances is not None:
            body["instances"] = instances
        else:
            body["inputs"] = inputs
        return self._request("POST", self._model_path(model, version, label) + ":predict", body)

    def wait_until_available(self, model: str, timeout: float = 60.0, interval: float = 0.25
                             ) -> dict:
        """Poll the model's status until a version is AVAILABLE; raise TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                status = self.status(model)
                states = [v.get("state") for v in status.get("model_version_status", [])]
                if "AVAILABLE" in states:
                    return status
            except (ServingError, OSError) as error:
                last = error
            time.sleep(interval)
        raise TimeoutError(f"{model} not available at {self.base_url} after {timeout:.0f} s"
                           + (f" (last error: {last})" if last else ""))

    def _model_path(self, model: str, version: int | None, label: str | None) -> str:
        if version is not None and label is not None:
            raise ValueError("Give `version` or `label`, not both.")
        path = f"/v1/models/{quote(model, safe='')}"
        if version is not None:
            path += f"/versions/{int(version)}"
        elif label is not None:
            path += f"/labels/{quote(label, safe='')}"
        return path

    def _request(self, method: str, path: str, body: Any = None) -> dict:
        data = None if body is None else json.dumps(body, default=_jsonable).encode("utf-8")
        request = urllib.request.Request(
            self.base_url + path, data=data, method=method,
            headers={"Content-Type": "application/json"} if data is not None else {},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            raw = error.read()
            try:
                message = json.loads(raw)["error"]
            except (ValueError, KeyError, TypeError):
                message = raw.decode("utf-8", errors="replace").strip() or str(error.reason)
            raise ServingError(error.code, message) from None


class GrpcClient:
    """TF Serving gRPC client (`PredictionService`, `ModelService`).

    Inputs are numpy arrays or nested lists; lists are cast to the signature's input dtypes (read
    once per model and signature with GetModelMetadata). Outputs come back as numpy arrays.
    """

    def __init__(self, target: str = "127.0.0.1:8500", timeout: float = 30.0) -> None:
        import grpc
        from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

        self.target, self.timeout = target, timeout
        options = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
        self._channel = grpc.insecure_channel(target, options=options)
        self._predict = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)
        self._dtypes: dict[tuple[str, int | None, str], dict[str, Any]] = {}

    def predict(
        self,
        model: str,
        inputs: Mapping[str, Any],
        signature_name: str | None = None,
        version: int | None = None,
        output_filter: Sequence[str] = (),
    ) -> dict[str, Any]:
        """Predict; returns output alias -> numpy array."""
        import numpy as np
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        signature = signature_name or "serving_default"
        request = predict_pb2.PredictRequest()
        request.model_spec.name = model
        request.model_spec.signature_name = signature
        if version is not None:
            request.model_spec.version.value = version
        request.output_filter.extend(output_filter)
        dtypes = self._input_dtypes(model, version, signature)
        for name, value in inputs.items():
            if not isinstance(value, np.ndarray) and name in dtypes:
                value = tf.make_tensor_proto(value, dtype=dtypes[name])
            else:
                value = tf.make_tensor_proto(value)
            request.inputs[name].CopyFrom(value)
        response = self._call(self._predict.Predict, request)
        return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}

    def status(self, model: str, version: int | None = None) -> Any:
        """`GetModelStatusResponse` proto."""
        from tensorflow_serving.apis import get_model_status_pb2

        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = model
        if version is not None:
            request.model_spec.version.value = version
        return self._call(self._models.GetModelStatus, request)

    def metadata(self, model: str, version: int | None = None) -> Any:
        """`SignatureDefMap` proto of the model (the `signature_def` metadata field unpacked)."""
        from tensorflow_serving.apis import get_model_metadata_pb2

        request = get_model_metadata_pb2.GetModelMetadataRequest()
        request.model_spec.name = model
        if version is not None:
            request.model_spec.version.value = version
        request.metadata_field.append("signature_def")
        response = self._call(self._predict.GetModelMetadata, request)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signature_map)
        return signature_map

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "GrpcClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _input_dtypes(self, model: str, version: int | None, signature: str) -> dict[str, Any]:
        key = (model, version, signature)
        if key not in self._dtypes:
            import tensorflow as tf

            signature_def = self.metadata(model, version).signature_def.get(signature)
            self._dtypes[key] = ({} if signature_def is None else
                                 {n: tf.dtypes.as_dtype(i.dtype)
                                  for n, i in signature_def.inputs.items()})
        return self._dtypes[key]

    def _call(self, method: Any, request: Any) -> Any:
        import grpc

        try:
            return method(request, timeout=self.timeout)
        except grpc.RpcError as error:
            code = error.code().name
            raise ServingError(HTTP_STATUS.get(code, 500), error.details() or code,
                               code=code) from None
