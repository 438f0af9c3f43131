"""Domain errors: a canonical code, an UPPER_SNAKE reason and a message a developer can act on.

The transport maps ``code`` to its own status (gRPC here, HTTP later) and
sends ``reason`` as the ErrorInfo reason. Messages never carry stack traces
or file paths.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping


class Code(enum.Enum):
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    OUT_OF_RANGE = "OUT_OF_RANGE"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    UNAVAILABLE = "UNAVAILABLE"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    INTERNAL = "INTERNAL"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    PERMISSION_DENIED = "PERMISSION_DENIED"


class KairosError(Exception):
    def __init__(self, code: Code, reason: str, message: str, metadata: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.metadata = dict(metadata or {})


def invalid(reason: str, message: str, **metadata: str) -> KairosError:
    return KairosError(Code.INVALID_ARGUMENT, reason, message, metadata)


def not_found(reason: str, message: str, **metadata: str) -> KairosError:
    return KairosError(Code.NOT_FOUND, reason, message, metadata)


def failed_precondition(reason: str, message: str, **metadata: str) -> KairosError:
    return KairosError(Code.FAILED_PRECONDITION, reason, message, metadata)
