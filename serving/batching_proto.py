"""TF Serving's `BatchingParameters` message, for writing and reading `batching.config`.

The tensorflow-serving-api wheel ships the client protos and `model_server_config.proto`, but not
`servables/tensorflow/session_bundle_config.proto` where `BatchingParameters` lives. Its fields are
re-declared here, with the same package, names, numbers and types (tensorflow/serving
`session_bundle_config.proto`), in a private descriptor pool, so that `batching.config` is written
by protobuf's own text format, exactly as `tensorflow_model_server --batching_parameters_file`
parses it.
"""

from __future__ import annotations

import functools
from typing import Any

_PACKAGE = "tensorflow.serving"
_FILE = "tensorflow_serving/servables/tensorflow/session_bundle_config.proto"

# (name, number, type, wrapper message or None, repeated)
_FIELDS = (
    ("max_batch_size", 1, "message", ".google.protobuf.Int64Value", False),
    ("batch_timeout_micros", 2, "message", ".google.protobuf.Int64Value", False),
    ("max_enqueued_batches", 3, "message", ".google.protobuf.Int64Value", False),
    ("num_batch_threads", 4, "message", ".google.protobuf.Int64Value", False),
    ("thread_pool_name", 5, "message", ".google.protobuf.StringValue", False),
    ("allowed_batch_sizes", 6, "int64", None, True),
    ("pad_variable_length_inputs", 7, "bool", None, False),
)


@functools.cache
def batching_parameters_class() -> Any:
    """The generated message class `tensorflow.serving.BatchingParameters`."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, wrappers_pb2

    field = descriptor_pb2.FieldDescriptorProto
    types = {"message": field.TYPE_MESSAGE, "int64": field.TYPE_INT64, "bool": field.TYPE_BOOL}
    file_proto = descriptor_pb2.FileDescriptorProto(
        name=_FILE, package=_PACKAGE, syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"],
    )
    message = file_proto.message_type.add(name="BatchingParameters")
    for name, number, kind, type_name, repeated in _FIELDS:
        message.field.add(
            name=name, number=number, type=types[kind],
            label=field.LABEL_REPEATED if repeated else field.LABEL_OPTIONAL,
            **({"type_name": type_name} if type_name else {}),
        )
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
    pool.AddSerializedFile(file_proto.SerializeToString())
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName(f"{_PACKAGE}.BatchingParameters")
    )
