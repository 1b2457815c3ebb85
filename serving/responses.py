"""Model status and metadata responses, shared by the REST and gRPC front ends.

Status: one `ModelVersionStatus` per version, newest first, with the canonical error code of a
failed load. Metadata: TF Serving answers `GetModelMetadata` with the servable's `model_spec`
(name and version) and `metadata["signature_def"]`, an `Any` packing a `SignatureDefMap` of the
SavedModel's `MetaGraphDef.signature_def` (all of them, `__saved_model_init_op` included). Its
REST handler prints the two parts with protobuf's JSON printer (proto field names kept, default
values printed) into `{"model_spec": ..., "metadata": {"signature_def": ...}}`
(http_rest_api_util.cc).
"""

from __future__ import annotations

import json
from typing import Any

from serving.models import ModelRegistry, Servable
from serving.status import CODE_NUMBER


def model_status_response(
    registry: ModelRegistry, name: str, version: int | None = None, label: str | None = None
) -> Any:
    """The `GetModelStatusResponse` for a model (or one version of it)."""
    from tensorflow_serving.apis import get_model_status_pb2

    response = get_model_status_pb2.GetModelStatusResponse()
    for state in registry.status(name, version, label):
        entry = response.model_version_status.add()
        entry.version = state.version
        entry.state = get_model_status_pb2.ModelVersionStatus.State.Value(state.state)
        entry.status.error_code = CODE_NUMBER[state.error_code]
        entry.status.error_message = state.error_message
    return response


def model_status_json(
    registry: ModelRegistry, name: str, version: int | None = None, label: str | None = None
) -> str:
    """The REST status body: the response printed by protobuf's JSON printer with defaults."""
    from google.protobuf import json_format

    return json_format.MessageToJson(model_status_response(registry, name, version, label),
                                     always_print_fields_with_no_presence=True)


def signature_def_map(servable: Servable) -> Any:
    """The `SignatureDefMap` proto of a loaded version."""
    from tensorflow_serving.apis import get_model_metadata_pb2

    signature_map = get_model_metadata_pb2.SignatureDefMap()
    for name, signature_def in servable.signature_defs.items():
        signature_map.signature_def[name].CopyFrom(signature_def)
    return signature_map


def model_metadata_response(servable: Servable) -> Any:
    """The gRPC `GetModelMetadataResponse` of a loaded version."""
    from tensorflow_serving.apis import get_model_metadata_pb2

    response = get_model_metadata_pb2.GetModelMetadataResponse()
    response.model_spec.name = servable.name
    response.model_spec.version.value = servable.version
    response.metadata["signature_def"].Pack(signature_def_map(servable))
    return response


def model_metadata_json(servable: Servable) -> str:
    """The REST `/metadata` body of a loaded version."""
    from google.protobuf import json_format
    from tensorflow_serving.apis import model_pb2

    options = {"preserving_proto_field_name": True, "always_print_fields_with_no_presence": True}
    model_spec = model_pb2.ModelSpec(name=servable.name)
    model_spec.version.value = servable.version
    return json.dumps({
        "model_spec": json_format.MessageToDict(model_spec, **options),
        "metadata": {
            "signature_def": json_format.MessageToDict(signature_def_map(servable), **options),
        },
    }, indent=1)
