"""TF Serving's gRPC API (`PredictionService`, `ModelService`) over a `ModelRegistry`.

Uses the official service stubs and messages from `tensorflow_serving.apis`, so a client built on
`prediction_service_pb2_grpc.PredictionServiceStub` talks to this server and to real TF Serving
alike. Predict responses carry `model_spec` (name, version, resolved signature name) and outputs in
the typed `*_val` fields, as TF Serving fills them. `HandleReloadConfigRequest` makes the registry
serve exactly the request's `model_config_list` (`ModelRegistry.reload_config`). Classify,
Regress and MultiInference answer UNIMPLEMENTED. `CallCounter` counts the calls being answered,
so that a stopping server can say how many it drains.
"""

from __future__ import annotations

import functools
import threading
import time
from typing import Any, Callable

import grpc
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import (
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from serving.json_tensor import check_input_shape
from serving.metrics import ServingMetrics
from serving.models import ModelRegistry, verify_input_names
from serving.responses import model_metadata_response, model_status_response
from serving.signatures import (
    DEFAULT_SIGNATURE,
    array_from_tensor_proto,
    dtype_name,
    input_dtypes,
    tensor_proto_from_array,
)
from serving.status import ServingStatus, from_tf_error, invalid_argument

_DTYPE_NAMES = set(types_pb2.DataType.values())


def _short(dtype: str) -> str:
    """"DT_STRING" -> "string", as TF's dtype names read."""
    return dtype.removeprefix("DT_").lower()


def _answers_status(method: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a `ServingStatus` (or any failure) into the gRPC status of the same code."""

    @functools.wraps(method)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return method(self, request, context)
        except ServingStatus as status:
            context.abort(grpc.StatusCode[status.code], status.message)
        except Exception as error:  # noqa: BLE001  a server fault: report it, keep serving
            status = from_tf_error(error)
            context.abort(grpc.StatusCode[status.code], f"{type(error).__name__}: {error}")

    return wrapper


def _spec_of(request: Any) -> tuple[str, int | None, str | None]:
    spec = request.model_spec
    version = spec.version.value if spec.HasField("version") else None
    label = spec.version_label if spec.WhichOneof("version_choice") == "version_label" else None
    return spec.name, version, label


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """Predict and GetModelMetadata."""

    def __init__(self, registry: ModelRegistry, metrics: ServingMetrics | None = None) -> None:
        self.registry = registry
        self.metrics = metrics or ServingMetrics()

    @_answers_status
    def Predict(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        start, served, code = time.perf_counter(), {}, "INTERNAL"
        try:
            response = self._predict(request, served)
            code = "OK"
            return response
        except ServingStatus as status:
            code = status.code
            raise
        except Exception as error:
            code = from_tf_error(error).code
            raise
        finally:
            self.metrics.observe(request.model_spec.name, "predict", "GRPC", code,
                                 time.perf_counter() - start, **served)

    def _predict(self, request: Any, served: dict) -> Any:
        name, version, label = _spec_of(request)
        servable = self.registry.get(name, version, label)
        signature_name = request.model_spec.signature_name or DEFAULT_SIGNATURE
        served.update(version=servable.version, signature=signature_name)
        signature_def = servable.signature_defs.get(signature_name)
        if signature_def is None:
            raise ServingStatus("FAILED_PRECONDITION",
                                f'Serving signature key "{signature_name}" not found.')
        # Names, dtypes and shapes against the signature before any array is built from a proto
        # (a DT_RESOURCE or 33-dimension tensor must not reach TensorFlow's converters).
        expected = input_dtypes(signature_def)
        verify_input_names(set(request.inputs), set(expected))
        for name, proto in request.inputs.items():
            sent = types_pb2.DataType.Name(proto.dtype) if proto.dtype in _DTYPE_NAMES else (
                f"dtype {proto.dtype}")
            if sent != expected[name]:
                raise invalid_argument(
                    f"Input {name} has dtype {_short(sent)}, but signature {signature_name} "
                    f"expects {_short(expected[name])}")
            check_input_shape(name, [d.size for d in proto.tensor_shape.dim])
        try:
            inputs = {k: array_from_tensor_proto(v) for k, v in request.inputs.items()}
        except Exception as error:  # noqa: BLE001  any unreadable proto is the client's error
            raise invalid_argument(f"Cannot read an input TensorProto: {error}") from None
        outputs = servable.predict(signature_name, inputs, request.output_filter)
        response = predict_pb2.PredictResponse()
        response.model_spec.name = servable.name
        response.model_spec.version.value = servable.version
        response.model_spec.signature_name = signature_name
        for alias, array in outputs.items():
            dtype = dtype_name(signature_def.outputs[alias])
            response.outputs[alias].CopyFrom(tensor_proto_from_array(array, dtype))
        return response

    @_answers_status
    def GetModelMetadata(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        if not request.HasField("model_spec"):
            raise invalid_argument("Missing ModelSpec")
        if not request.metadata_field:
            raise invalid_argument("GetModelMetadataRequest must specify at least one "
                                   "metadata_field")
        for field in request.metadata_field:
            if field != "signature_def":
                raise invalid_argument(f"Metadata field {field} is not supported")
        return model_metadata_response(self.registry.get(*_spec_of(request)))

    @_answers_status
    def Classify(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        raise ServingStatus("UNIMPLEMENTED", "Classify is not implemented by this local server")

    @_answers_status
    def Regress(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        raise ServingStatus("UNIMPLEMENTED", "Regress is not implemented by this local server")

    @_answers_status
    def MultiInference(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        raise ServingStatus("UNIMPLEMENTED",
                            "MultiInference is not implemented by this local server")


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    """GetModelStatus and HandleReloadConfigRequest."""

    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry

    @_answers_status
    def GetModelStatus(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        if not request.HasField("model_spec"):
            raise invalid_argument("Missing ModelSpec")
        return model_status_response(self.registry, *_spec_of(request))

    @_answers_status
    def HandleReloadConfigRequest(  # noqa: N802
        self, request: Any, context: grpc.ServicerContext
    ) -> Any:
        """Serve exactly `request.config`'s models; an invalid config is INVALID_ARGUMENT and
        changes nothing; new models that did not load are UNKNOWN, as in TF Serving."""
        unavailable = self.registry.reload_config(request.config)
        if unavailable:
            raise ServingStatus("UNKNOWN", f"{len(unavailable)} model(s) did not become "
                                f"available: {{{', '.join(unavailable)}}}")
        response = model_management_pb2.ReloadConfigResponse()
        response.status.SetInParent()  # error_code OK, as TF Serving sets it
        return response


class CallCounter(grpc.ServerInterceptor):
    """Counts the unary calls being answered (`active`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active = 0

    @property
    def active(self) -> int:
        with self._lock:
            return self._active

    def intercept_service(self, continuation: Callable[..., Any], details: Any) -> Any:
        handler = continuation(details)
        if handler is None or handler.unary_unary is None:
            return handler
        answer = handler.unary_unary

        def counted(request: Any, context: grpc.ServicerContext) -> Any:
            with self._lock:
                self._active += 1
            try:
                return answer(request, context)
            finally:
                with self._lock:
                    self._active -= 1

        return grpc.unary_unary_rpc_method_handler(
            counted, request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer)


def add_services(server: grpc.Server, registry: ModelRegistry,
                 metrics: ServingMetrics | None = None) -> None:
    """Register both services on a gRPC server (Predict requests counted in `metrics`)."""
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionServicer(registry, metrics), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(registry), server)
