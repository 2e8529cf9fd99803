"""Errors of the REST API: each becomes a 4xx/5xx envelope with a stable code.

ApiError                         base: status, code, message, details
├── InvalidJson                  400 INVALID_JSON         the body is not JSON
├── ValidationFailed             422 VALIDATION_ERROR     a field is missing, unknown,
│                                                         of the wrong type or range
├── Unauthorized                 401 UNAUTHORIZED         no, bad or revoked API key
├── NotFound                     404 NOT_FOUND
├── MethodNotAllowed             405 METHOD_NOT_ALLOWED
├── InvalidStateTransition       409 INVALID_STATE_TRANSITION
├── IdempotencyKeyReused         422 IDEMPOTENCY_KEY_REUSED  same key, another body
├── IdempotencyInProgress        409 IDEMPOTENCY_IN_PROGRESS the first request is still
│                                                            running
└── ServiceUnavailable           503 SERVICE_UNAVAILABLE  Redis is unreachable
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar


class ApiError(Exception):
    status: ClassVar[int] = 500
    code: ClassVar[str] = "INTERNAL_ERROR"

    def __init__(self, message: str, details: Mapping[str, object] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, object] = dict(details or {})


class InvalidJson(ApiError):
    status = 400
    code = "INVALID_JSON"


class ValidationFailed(ApiError):
    status = 422
    code = "VALIDATION_ERROR"


class Unauthorized(ApiError):
    status = 401
    code = "UNAUTHORIZED"


class NotFound(ApiError):
    status = 404
    code = "NOT_FOUND"


class MethodNotAllowed(ApiError):
    status = 405
    code = "METHOD_NOT_ALLOWED"


class InvalidStateTransition(ApiError):
    status = 409
    code = "INVALID_STATE_TRANSITION"


class IdempotencyKeyReused(ApiError):
    status = 422
    code = "IDEMPOTENCY_KEY_REUSED"


class IdempotencyInProgress(ApiError):
    status = 409
    code = "IDEMPOTENCY_IN_PROGRESS"


class ServiceUnavailable(ApiError):
    status = 503
    code = "SERVICE_UNAVAILABLE"
