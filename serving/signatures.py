"""What a SavedModel's serving signatures look like, read from `saved_model.pb` by path.

TF Serving works from the `MetaGraphDef` tagged `serve`: its `signature_def` map gives every
signature's input and output names, dtypes and shapes. This module reads that map (without loading
the model), builds example inputs from it (for warm-up requests and load checks) and converts
between numpy arrays and `TensorProto`s the way TF Serving's gRPC API fills them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from serving.json_tensor import DTYPES

SERVE_TAG = "serve"
DEFAULT_SIGNATURE = "serving_default"
PREDICT_METHOD = "tensorflow/serving/predict"

# Example values for inputs a caller did not give, by input dtype.
_DEFAULT_VALUES = {"DT_STRING": b"", "DT_BOOL": False, "DT_FLOAT": 0.0, "DT_DOUBLE": 0.0}


def read_meta_graph(saved_model_dir: str | Path, tag: str = SERVE_TAG):
    """The `MetaGraphDef` of `saved_model_dir` that carries `tag` (TF Serving loads `serve`)."""
    from tensorflow.core.protobuf import saved_model_pb2

    path = Path(saved_model_dir) / "saved_model.pb"
    if not path.exists():
        raise FileNotFoundError(f"No saved_model.pb in {saved_model_dir}: not a SavedModel folder")
    saved_model = saved_model_pb2.SavedModel()
    saved_model.ParseFromString(path.read_bytes())
    for meta_graph in saved_model.meta_graphs:
        if tag in meta_graph.meta_info_def.tags:
            return meta_graph
    tags = [list(m.meta_info_def.tags) for m in saved_model.meta_graphs]
    raise ValueError(f"{saved_model_dir} has no MetaGraphDef tagged {tag!r}. Received tags: {tags}")


def serving_signature_names(signature_defs: Mapping[str, Any]) -> list[str]:
    """Signatures a client can call (TF's internal `__saved_model_init_op` is not one)."""
    return sorted(name for name in signature_defs if not name.startswith("__"))


def dtype_name(tensor_info: Any) -> str:
    """`DT_FLOAT`, `DT_STRING`, ... of a `TensorInfo`."""
    from tensorflow.core.framework import types_pb2

    return types_pb2.DataType.Name(tensor_info.dtype)


def input_dtypes(signature_def: Any) -> dict[str, str]:
    """Input name -> `DT_*` dtype name of a `SignatureDef`."""
    return {name: dtype_name(info) for name, info in signature_def.inputs.items()}


def shape_of(tensor_info: Any) -> list[int] | None:
    """Dimensions of a `TensorInfo` (-1 where unknown), or None for an unknown rank."""
    shape = tensor_info.tensor_shape
    return None if shape.unknown_rank else [int(d.size) for d in shape.dim]


def example_inputs(
    signature_def: Any, samples: Mapping[str, Sequence[Any]] | None = None
) -> dict[str, np.ndarray]:
    """Inputs that satisfy `signature_def`: `samples[name]` where given, else dtype defaults.

    Unknown dimensions get the sample's batch size (or 1); inputs of unknown rank are scalars.
    """
    samples = dict(samples or {})
    batch = max((len(v) for v in samples.values() if isinstance(v, (list, tuple))), default=1)
    inputs = {}
    for name, info in sorted(signature_def.inputs.items()):
        dtype = dtype_name(info)
        if dtype not in DTYPES:
            raise ValueError(f"Input {name!r} has dtype {dtype}, which the TF Serving JSON API "
                             "cannot carry; give its example values explicitly.")
        np_dtype = DTYPES[dtype][0]
        dims = shape_of(info)
        if name in samples:
            values = samples[name]
            if np_dtype is object:
                values = _encode_strings(values)
            array = np.asarray(values, dtype=np_dtype)
            if dims is not None and not _compatible(array.shape, dims):
                raise ValueError(f"Example input {name!r} has shape {list(array.shape)}, but the "
                                 f"signature expects {dims} (-1: any size)")
            inputs[name] = array
            continue
        dims = dims or []
        shape = [batch if i == 0 and d < 0 else max(d, 1) for i, d in enumerate(dims)]
        value = _DEFAULT_VALUES.get(dtype, 1)
        inputs[name] = np.full(shape, value, dtype=np_dtype)
    return inputs


def _compatible(shape: Sequence[int], dims: Sequence[int]) -> bool:
    return len(shape) == len(dims) and all(d < 0 or d == s for s, d in zip(shape, dims))


def _encode_strings(values: Any) -> Any:
    if isinstance(values, str):
        return values.encode("utf-8")
    if isinstance(values, (list, tuple)):
        return [_encode_strings(v) for v in values]
    return values


def tensor_proto_from_array(array: np.ndarray, dtype: str):
    """A `TensorProto` of `dtype` (`DT_*`), values in the typed `*_val` field as TF Serving's
    `Tensor::AsProtoField` writes predict responses."""
    from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

    array = np.asarray(array)
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DataType.Value(dtype))
    proto.tensor_shape.CopyFrom(
        tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=int(d)) for d in array.shape]
        )
    )
    flat = array.reshape(-1)
    if dtype == "DT_STRING":
        proto.string_val.extend(v if isinstance(v, bytes) else str(v).encode() for v in flat)
    elif dtype == "DT_FLOAT":
        proto.float_val.extend(flat.astype(np.float32).tolist())
    elif dtype == "DT_DOUBLE":
        proto.double_val.extend(flat.astype(np.float64).tolist())
    elif dtype in ("DT_INT32", "DT_INT16", "DT_INT8", "DT_UINT8", "DT_UINT16"):
        proto.int_val.extend(flat.astype(np.int64).tolist())
    elif dtype == "DT_INT64":
        proto.int64_val.extend(flat.astype(np.int64).tolist())
    elif dtype == "DT_UINT32":
        proto.uint32_val.extend(flat.astype(np.uint64).tolist())
    elif dtype == "DT_UINT64":
        proto.uint64_val.extend(flat.astype(np.uint64).tolist())
    elif dtype == "DT_BOOL":
        proto.bool_val.extend(flat.astype(bool).tolist())
    else:
        import tensorflow as tf

        return tf.make_tensor_proto(array, dtype=tf.dtypes.as_dtype(array.dtype))
    return proto


def array_from_tensor_proto(proto: Any) -> np.ndarray:
    """The numpy value of a `TensorProto` (typed fields or `tensor_content`)."""
    import tensorflow as tf

    return tf.make_ndarray(proto)
