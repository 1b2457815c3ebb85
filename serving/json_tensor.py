"""TF Serving's JSON <-> tensor conversion for the REST predict API, in numpy.

A port of the behaviour of tensorflow/serving `util/json_tensor.cc` (what the real
`tensorflow_model_server` does), so that a client written against this server works unchanged
against TF Serving:

- requests: `{"signature_name"?, "instances": [...]}` (row format) or `{"inputs": ...}` (columnar);
  values are checked against the signature's dtypes with the same rules (an integer is not a valid
  `bool`, `1.5` is not a valid `int32`, integers above 2**24 do not fit a `float` losslessly, ...);
  `{"b64": "..."}` is accepted wherever a string value may appear; every list at one level must
  have the same length (no ragged tensors);
- responses: `{"predictions": [...]}` for row requests (one object per row when there are several
  outputs) and `{"outputs": ...}` for columnar ones; string outputs whose name ends in `_bytes` are
  written as `{"b64": "..."}`; floats are written the way TF Serving writes them (shortest of
  `%g`/`%.9g` that round-trips, a trailing `.0` on whole numbers, `NaN`/`Infinity` tokens).

Error messages follow json_tensor.cc's wording. Only numpy is needed here: dtypes are the
`DT_*` names of the signature's `TensorInfo`.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from typing import Any, Mapping

import numpy as np

from serving.status import ServingStatus, invalid_argument

ROW, COLUMNAR = "row", "columnar"

# DT_* name -> (numpy dtype, TensorFlow's DataTypeString used in messages).
DTYPES: dict[str, tuple[Any, str]] = {
    "DT_FLOAT": (np.float32, "float"),
    "DT_DOUBLE": (np.float64, "double"),
    "DT_INT32": (np.int32, "int32"),
    "DT_INT16": (np.int16, "int16"),
    "DT_INT8": (np.int8, "int8"),
    "DT_UINT8": (np.uint8, "uint8"),
    "DT_INT64": (np.int64, "int64"),
    "DT_UINT32": (np.uint32, "uint32"),
    "DT_UINT64": (np.uint64, "uint64"),
    "DT_BOOL": (np.bool_, "bool"),
    "DT_STRING": (object, "string"),
}

# TensorFlow's converter kills the process on a string array of rank 33-64 (numpy allows 64), so
# no input may be deeper than this, checked before any array or tensor is built.
MAX_RANK = 32
# Elements of one input tensor: a TensorProto may declare a shape far larger than the values it
# carries (TensorFlow repeats the last one), which would allocate without bound.
MAX_ELEMENTS = 1 << 24


def check_input_shape(name: str, dims: list[int]) -> None:
    """400 for an input whose declared shape no signature here can take, before it is built."""
    if len(dims) > MAX_RANK:
        raise invalid_argument(f"Input {name} has {len(dims)} dimensions; at most {MAX_RANK} "
                               "are supported")
    if any(d < 0 for d in dims):
        raise invalid_argument(f"Input {name} has a negative dimension: {_shape_text(dims)}")
    if math.prod(dims) > MAX_ELEMENTS:
        raise invalid_argument(f"Input {name} of shape {_shape_text(dims)} has "
                               f"{math.prod(dims)} elements; at most {MAX_ELEMENTS} are supported")


_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)
_UINT32 = (0, 2**32 - 1)
_UINT64 = (0, 2**64 - 1)
_FLOAT32_MAX_INT = 2**24 - 1
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_MESSAGE_VALUE_CHARS = 256  # JSON values quoted in error messages are cut to this length


# ----------------------------------------------------------------------------------------------
# Requests


def parse_json_body(body: bytes) -> dict[str, Any]:
    """Parse a request body; it must be a JSON object (NaN and Infinity tokens are allowed)."""
    if not body:
        raise invalid_argument("JSON Parse error: The document is empty")
    try:
        doc = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise invalid_argument(f"JSON Parse error: Invalid encoding in string. at offset: "
                               f"{error.start}") from None
    except json.JSONDecodeError as error:
        raise invalid_argument(f"JSON Parse error: {error.msg} at offset: {error.pos}") from None
    except RecursionError:
        raise invalid_argument("JSON Parse error: the document is nested too deeply") from None
    if not isinstance(doc, dict):
        raise invalid_argument("JSON Value: ", _value_text(doc), " Is not object")
    return doc


def signature_name_of(doc: Mapping[str, Any]) -> str:
    """The optional `signature_name` of a request ("" when absent: the default signature)."""
    name = doc.get("signature_name", "")
    if not isinstance(name, str):
        raise invalid_argument(
            "JSON Value: ", _value_text(doc),
            " not formatted correctly. 'signature_name' key must be a string value.",
        )
    return name


def predict_inputs_from_json(
    doc: Mapping[str, Any], input_dtypes: Mapping[str, str]
) -> tuple[dict[str, np.ndarray], str]:
    """Tensors of a parsed predict request, and its format (`ROW` or `COLUMNAR`).

    `input_dtypes` maps each signature input name to its `DT_*` dtype name.
    """
    if not input_dtypes:
        raise invalid_argument("Failed to get input map for signature: ",
                               signature_name_of(doc) or "DEFAULT")
    has_instances, has_inputs = "instances" in doc, "inputs" in doc
    if has_instances and has_inputs:
        raise invalid_argument(
            "JSON Value: ", _value_text(doc), " Not formatted correctly expecting only one of "
            "'inputs' or 'instances' keys to exist ",
        )
    if has_instances:
        instances = doc["instances"]
        if not isinstance(instances, list):
            raise invalid_argument("JSON Value: ", _value_text(doc),
                                   " Excepting 'instances' to be an list/array")
        if not instances:
            raise invalid_argument("JSON Value: ", _value_text(doc),
                                   " No values in 'instances' array")
        return _tensors_from_instances(instances, input_dtypes), ROW
    if has_inputs:
        return _tensors_from_inputs(doc["inputs"], input_dtypes), COLUMNAR
    raise invalid_argument("Missing 'inputs' or 'instances' key")


class _Tensor:
    """Values and shape of one tensor being filled from JSON."""

    def __init__(self, dtype: str) -> None:
        self.dtype = dtype
        self.shape: list[int] = []
        self.values: list[Any] = []

    def to_numpy(self, shape: list[int] | None = None) -> np.ndarray:
        np_dtype = DTYPES[self.dtype][0]
        shape = self.shape if shape is None else shape
        if np_dtype is object:
            array = np.empty(len(self.values), dtype=object)
            array[:] = self.values
            return array.reshape(shape)
        if np_dtype in (np.int8, np.int16, np.uint8):
            # TF Serving stores these in the proto's int32 field and casts (wrapping) on load.
            return np.array(self.values, dtype=np.int64).astype(np_dtype).reshape(shape)
        return np.array(self.values, dtype=np_dtype).reshape(shape)


def _tensors_from_instances(
    instances: list[Any], input_dtypes: Mapping[str, str]
) -> dict[str, np.ndarray]:
    if not _is_object(instances[0]) and len(input_dtypes) > 1:
        raise invalid_argument(
            "instances is a plain list, but expecting list of objects as multiple input tensors "
            "required as per tensorinfo_map"
        )
    elements_are_objects = _is_named_object(instances[0])
    input_names = sorted(input_dtypes)
    tensors: dict[str, _Tensor] = {}
    shapes: dict[str, list[int]] = {}
    for index, element in enumerate(instances):
        if elements_are_objects:
            if not _is_named_object(element):
                raise invalid_argument(f"Expecting object but got list at item {index} of input "
                                       "list")
            for name, value in element.items():
                try:
                    _add_instance_item(value, name, input_dtypes, tensors, shapes)
                except ServingStatus as error:
                    raise invalid_argument(
                        f"Failed to process element: {index} key: {name} of 'instances' list. "
                        f"Error: {error.code}: {error.message}"
                    ) from None
            if sorted(element) != input_names:
                raise invalid_argument(
                    f"Failed to process element: {index} of 'instances' list. JSON object: "
                    f"{_value_text(element)} keys must be equal to: {','.join(input_names)}"
                )
        else:
            if _is_named_object(element):
                raise invalid_argument(f"Expecting value/list but got object at item {index} of "
                                       "input list")
            try:
                _add_instance_item(element, input_names[0], input_dtypes, tensors, shapes)
            except ServingStatus as error:
                raise invalid_argument(
                    f"Failed to process element: {index} of 'instances' list. Error: "
                    f"{error.code}: {error.message}"
                ) from None
    count = len(instances)
    return {name: t.to_numpy([count, *shapes[name]]) for name, t in tensors.items()}


def _add_instance_item(
    item: Any,
    name: str,
    input_dtypes: Mapping[str, str],
    tensors: dict[str, _Tensor],
    shapes: dict[str, list[int]],
) -> None:
    if name not in input_dtypes:
        raise invalid_argument("JSON object: does not have named input: ", name)
    tensor = tensors.setdefault(name, _Tensor(input_dtypes[name]))
    shape = _dense_shape(item)
    before = len(tensor.values)
    _fill(item, 0, shape, tensor)
    size = len(tensor.values) - before
    if name not in shapes:
        shapes[name] = shape
    elif math.prod(shapes[name]) != size:
        raise invalid_argument(f"Expecting tensor size: {math.prod(shapes[name])} but got: {size}")
    elif shapes[name] != shape:
        raise invalid_argument(f"Expecting shape {_shape_text(shapes[name])} but got: "
                               f"{_shape_text(shape)}")


def _tensors_from_inputs(value: Any, input_dtypes: Mapping[str, str]) -> dict[str, np.ndarray]:
    if not isinstance(value, dict) or _is_b64(value):
        if len(input_dtypes) > 1:
            raise invalid_argument(
                "inputs is a plain value/list, but expecting an object as multiple input tensors "
                "required as per tensorinfo_map"
            )
        name = next(iter(input_dtypes))
        return {name: _tensor_from_value(value, input_dtypes[name])}
    tensors = {}
    # Like TF Serving, keys of `inputs` that the signature does not name are ignored.
    for name in sorted(input_dtypes):
        if name not in value:
            raise invalid_argument(f"Missing named input: {name} in 'inputs' object.")
        tensors[name] = _tensor_from_value(value[name], input_dtypes[name])
    return tensors


def _tensor_from_value(value: Any, dtype: str) -> np.ndarray:
    tensor = _Tensor(dtype)
    tensor.shape = _dense_shape(value)
    _fill(value, 0, tensor.shape, tensor)
    return tensor.to_numpy()


def _dense_shape(value: Any) -> list[int]:
    """The shape implied by following the first element of each nested list (at most
    MAX_RANK deep: deeper lists are refused before anything is built from them)."""
    shape = []
    while isinstance(value, list):
        if len(shape) == MAX_RANK:
            raise invalid_argument(f"JSON Value: lists nested deeper than {MAX_RANK} levels; at "
                                   f"most {MAX_RANK} dimensions are supported")
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return shape


def _fill(value: Any, level: int, shape: list[int], tensor: _Tensor) -> None:
    rank = len(shape)
    if not isinstance(value, list):
        if level != rank:
            raise invalid_argument(
                f"JSON Value: {_value_text(value)} found at incorrect level: {level + 1} in the "
                f"JSON DOM. Expected at level: {rank}"
            )
        if isinstance(value, dict):
            if tensor.dtype != "DT_STRING":
                raise _type_error(value, tensor.dtype)
            tensor.values.append(_decode_b64(value))
        else:
            tensor.values.append(_checked_value(value, tensor.dtype))
        return
    if level >= rank:
        raise invalid_argument(f"Encountered list at unexpected level: {level} expected < {rank}")
    if len(value) != shape[level]:
        raise invalid_argument(
            f"Encountered list at unexpected size: {len(value)} at level: {level} expected size: "
            f"{shape[level]}"
        )
    for element in value:
        _fill(element, level + 1, shape, tensor)


def _checked_value(value: Any, dtype: str) -> Any:
    """A JSON scalar converted for `dtype`, with json_tensor.cc's acceptance rules."""
    if dtype not in DTYPES:
        name = dtype.removeprefix("DT_").lower()
        raise ServingStatus("UNIMPLEMENTED",
                            f"Conversion of JSON Value: {_value_text(value)} to type: {name}")
    is_int = isinstance(value, int) and not isinstance(value, bool)
    is_number = is_int or isinstance(value, float)
    if dtype in ("DT_FLOAT", "DT_DOUBLE"):
        if not is_number:
            raise _type_error(value, dtype)
        if dtype == "DT_FLOAT" and not _is_lossless_float32(value):
            raise invalid_argument(f"Cannot convert JSON value: {_value_text(value)} to float "
                                   "without loss of precision.")
        if dtype == "DT_DOUBLE" and is_int and _fits_json_integer(value) and abs(value) > 2**53 - 1:
            raise invalid_argument(f"Cannot convert JSON value: {_value_text(value)} to double "
                                   "without loss of precision.")
        return float(value)
    if dtype == "DT_STRING":
        if not isinstance(value, str):
            raise _type_error(value, dtype)
        return value.encode("utf-8", errors="surrogatepass")
    if dtype == "DT_BOOL":
        if not isinstance(value, bool):
            raise _type_error(value, dtype)
        return value
    bounds = {"DT_INT64": _INT64, "DT_UINT32": _UINT32, "DT_UINT64": _UINT64}.get(dtype, _INT32)
    if not is_int or not bounds[0] <= value <= bounds[1]:
        raise _type_error(value, dtype)
    return value


def _is_lossless_float32(value: int | float) -> bool:
    if isinstance(value, int) and _fits_json_integer(value):
        return abs(value) <= _FLOAT32_MAX_INT
    number = float(value)
    return not math.isfinite(number) or -_FLOAT32_MAX <= number <= _FLOAT32_MAX


def _fits_json_integer(value: int) -> bool:
    """Whether rapidjson would read this integer as an integer (int64 or uint64), not a double."""
    return _INT64[0] <= value <= _UINT64[1]


def _is_object(value: Any) -> bool:
    return isinstance(value, dict)


def _is_b64(value: Any) -> bool:
    """`{"b64": "<string>"}` and nothing else, as TF Serving's IsValBase64Object."""
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def _is_named_object(value: Any) -> bool:
    return isinstance(value, dict) and not _is_b64(value)


def _decode_b64(value: dict[str, Any]) -> bytes:
    if not _is_b64(value):
        raise invalid_argument("JSON Value: ", _value_text(value),
                               " not formatted correctly for base64 data")
    text = value["b64"]
    try:
        # Like absl::Base64Unescape: the standard alphabet, padding optional.
        return base64.b64decode((text + "=" * (-len(text) % 4)).encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise invalid_argument("Unable to base64 decode") from None


def _type_error(value: Any, dtype: str) -> ServingStatus:
    return invalid_argument(
        f"JSON Value: {_value_text(value)} Type: {_json_type(value)} is not of expected type: "
        f"{DTYPES.get(dtype, (None, dtype.removeprefix('DT_').lower()))[1]}"
    )


def _json_type(value: Any) -> str:
    if value is None:
        return "Null"
    if value is True:
        return "True"
    if value is False:
        return "False"
    if isinstance(value, dict):
        return "Object"
    if isinstance(value, list):
        return "Array"
    if isinstance(value, str):
        return "String"
    return "Number"


def _value_text(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if len(text) > _MESSAGE_VALUE_CHARS:
        text = text[:_MESSAGE_VALUE_CHARS] + "...(truncated)"
    return text


def _shape_text(shape: list[int]) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


# ----------------------------------------------------------------------------------------------
# Responses


def predict_response_json(outputs: Mapping[str, np.ndarray], request_format: str) -> str:
    """The JSON body TF Serving returns for these output tensors and request format."""
    if not outputs:
        raise invalid_argument("Cannot convert empty tensor map to JSON")
    names = sorted(outputs)
    tokens = {name: _value_tokens(name, np.asarray(outputs[name])) for name in names}
    if request_format == COLUMNAR:
        if len(names) == 1:
            return '{"outputs": ' + _nested(tokens[names[0]]) + "}"
        body = ", ".join(f"{json.dumps(name)}: {_nested(tokens[name])}" for name in names)
        return '{"outputs": {' + body + "}}"
    if request_format != ROW:
        raise invalid_argument("Invalid request format")
    batch_size = -1
    for name in names:
        if tokens[name].ndim == 0:
            raise invalid_argument(f"Tensor name: {name} has no shape information ")
        size = tokens[name].shape[0]
        if batch_size >= 0 and size != batch_size:
            raise invalid_argument(f"Tensor name: {name} has inconsistent batch size: {size} "
                                   f"expecting: {batch_size}")
        batch_size = size
    rows = []
    for row in range(batch_size):
        if len(names) == 1:
            rows.append(_nested(tokens[names[0]][row]))
        else:
            fields = ", ".join(f"{json.dumps(n)}: {_nested(tokens[n][row])}" for n in names)
            rows.append("{" + fields + "}")
    return '{"predictions": [' + ", ".join(rows) + "]}"


def _nested(tokens: np.ndarray | str) -> str:
    if not isinstance(tokens, np.ndarray):
        return tokens
    if tokens.ndim == 0:
        return str(tokens[()])
    if tokens.ndim == 1:
        return "[" + ", ".join(tokens.tolist()) + "]"
    return "[" + ", ".join(_nested(t) for t in tokens) + "]"


def _value_tokens(name: str, array: np.ndarray) -> np.ndarray:
    """An array of JSON tokens (str) of the same shape as `array`."""
    kind = array.dtype
    if kind == np.float32 or kind == np.float16:
        return _decimal_tokens(array.astype(np.float32), "%.9g")
    if kind == np.float64:
        return _decimal_tokens(array, "%.17g")
    if kind == np.bool_:
        return np.where(array, "true", "false").astype(object)
    if np.issubdtype(kind, np.integer):
        return _map(array, lambda v: str(int(v)))
    if kind.kind in "OSU":
        if name.endswith("_bytes"):
            return _map(array, lambda v: f'{{"b64": "{base64.b64encode(_as_bytes(v)).decode()}"}}')
        return _map(array, lambda v: _json_string(_as_bytes(v).decode("utf-8", errors="replace")))
    raise invalid_argument(f"Failed to write JSON value for tensor type: {kind}")


def _decimal_tokens(array: np.ndarray, full_precision: str) -> np.ndarray:
    """Floats as TF Serving's WriteDecimal: `%g`, or full precision if `%g` does not round-trip.
    The round trip is checked for the whole array at once (numpy parses the `%g` texts back),
    a third to a half of the time per value of a check per value: a 384-float embedding is
    written in about a quarter of a millisecond less."""
    flat = array.reshape(-1)
    values = flat.tolist()
    short = ["%g" % v for v in values]
    with np.errstate(all="ignore"):
        exact = (np.array(short, dtype=array.dtype) == flat).tolist()
    tokens = []
    for value, text, round_trips in zip(values, short, exact):
        if text[-1] in "fn":  # "inf", "-inf", "nan"
            tokens.append("NaN" if text[-1] == "n" else
                          "-Infinity" if text[0] == "-" else "Infinity")
            continue
        if not round_trips:
            text = full_precision % value
        if "." not in text and "e" not in text:
            text += ".0"
        tokens.append(text)
    out = np.empty(len(tokens), dtype=object)
    out[:] = tokens
    return out.reshape(array.shape)


def _map(array: np.ndarray, function: Any) -> np.ndarray:
    flat = np.empty(array.size, dtype=object)
    # Python scalars (`tolist`) are several times faster to format than numpy ones; a float32
    # becomes the float of exactly its value, so every token stays the same.
    flat[:] = [function(v) for v in array.reshape(-1).tolist()]
    return flat.reshape(array.shape)


# `json.dumps(text, ensure_ascii=False)` without the encoder set-up it makes on every call.
_json_string = json.encoder.encode_basestring


def _as_bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode("utf-8")
