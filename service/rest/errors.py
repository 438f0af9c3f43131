"""Domain errors -> HTTP statuses and Personalizer's JSON error body.

Personalizer answered errors as ``{"error": {"code": ..., "message": ...}}`` (both SDKs read that shape);
Kairos puts its own UPPER_SNAKE reason in ``innerError.code`` so a caller can tell the cases apart.
"""

from __future__ import annotations

from typing import Any

from service.errors import Code, KairosError
from service.grpc.errors import without_paths

# The HTTP status of each canonical code (Google's HTTP mapping) and Personalizer's error code for it.
HTTP_STATUS: dict[Code, tuple[int, str]] = {
    Code.INVALID_ARGUMENT: (400, "BadRequest"),
    Code.FAILED_PRECONDITION: (400, "BadRequest"),
    Code.OUT_OF_RANGE: (400, "BadRequest"),
    Code.NOT_FOUND: (404, "ResourceNotFound"),
    Code.ALREADY_EXISTS: (409, "Conflict"),
    Code.UNAUTHENTICATED: (401, "Unauthorized"),
    Code.PERMISSION_DENIED: (403, "Forbidden"),
    Code.RESOURCE_EXHAUSTED: (429, "TooManyRequests"),
    Code.UNAVAILABLE: (503, "ServiceUnavailable"),
    Code.DEADLINE_EXCEEDED: (504, "GatewayTimeout"),
    Code.INTERNAL: (500, "InternalServerError"),
}


def error_body(code: str, message: str, reason: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": without_paths(message), "innerError": {"code": reason}}}


def http_error(error: KairosError) -> tuple[int, dict[str, Any]]:
    """The HTTP status and JSON body that answer ``error``."""
    status, code = HTTP_STATUS[error.code]
    return status, error_body(code, error.message, error.reason)
