"""Canonical error codes, and how TF Serving maps them to HTTP and gRPC statuses.

Every failure inside the server is a `ServingStatus` carrying one of TensorFlow's canonical codes
(the same `error::Code` TF Serving returns); the REST layer turns it into an HTTP status with the
table of tensorflow/serving `model_servers/http_server.cc` (`ToHTTPStatusCode`), the gRPC layer into
the gRPC code of the same name. Keeping the code, not the HTTP number, lets both front ends agree.
"""

from __future__ import annotations

import json

# TensorFlow canonical code -> HTTP status, exactly as TF Serving's ToHTTPStatusCode.
HTTP_STATUS: dict[str, int] = {
    "OK": 200,
    "CANCELLED": 499,
    "UNKNOWN": 500,
    "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "PERMISSION_DENIED": 403,
    "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400,
    "ABORTED": 409,
    "OUT_OF_RANGE": 400,
    "UNIMPLEMENTED": 501,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DATA_LOSS": 500,
    "UNAUTHENTICATED": 401,
}

# Numeric values of the canonical codes (tensorflow/core/protobuf/error_codes.proto), used for
# `StatusProto.error_code` in model status responses.
CODE_NUMBER: dict[str, int] = {
    "OK": 0, "CANCELLED": 1, "UNKNOWN": 2, "INVALID_ARGUMENT": 3, "DEADLINE_EXCEEDED": 4,
    "NOT_FOUND": 5, "ALREADY_EXISTS": 6, "PERMISSION_DENIED": 7, "RESOURCE_EXHAUSTED": 8,
    "FAILED_PRECONDITION": 9, "ABORTED": 10, "OUT_OF_RANGE": 11, "UNIMPLEMENTED": 12,
    "INTERNAL": 13, "UNAVAILABLE": 14, "DATA_LOSS": 15, "UNAUTHENTICATED": 16,
}


class ServingStatus(Exception):
    """A failed request: a canonical code name (`"NOT_FOUND"`, ...) and the message to return."""

    def __init__(self, code: str, message: str) -> None:
        if code not in HTTP_STATUS:
            raise ValueError(f"Unknown canonical code. Received: code={code!r}")
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        return HTTP_STATUS[self.code]

    def __str__(self) -> str:
        return self.message


def invalid_argument(*parts: object) -> ServingStatus:
    return ServingStatus("INVALID_ARGUMENT", "".join(str(p) for p in parts))


def not_found(*parts: object) -> ServingStatus:
    return ServingStatus("NOT_FOUND", "".join(str(p) for p in parts))


def from_tf_error(error: Exception) -> ServingStatus:
    """A TensorFlow error (`tf.errors.OpError`) keeps its canonical code; others are INTERNAL."""
    code = getattr(error, "error_code", None)
    name = _CODE_NAME.get(code) if isinstance(code, int) else None
    message = getattr(error, "message", None) or str(error)
    return ServingStatus(name or "INTERNAL", message)


_CODE_NAME = {number: name for name, number in CODE_NUMBER.items()}


def error_json(message: str) -> str:
    """A REST error body, as TF Serving writes it: `{"error": "..."}`."""
    return json.dumps({"error": message}, ensure_ascii=False)
