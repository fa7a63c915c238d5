"""Domain errors carrying an HTTP status; app/ renders them as one JSON error shape."""

from __future__ import annotations

from typing import Any


class CrackscanError(Exception):
    status_code = 400
    code = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.headers = headers or {}
        self.extra = extra or {}


class BadRequest(CrackscanError):
    status_code = 400
    code = "bad_request"


class Unauthorized(CrackscanError):
    status_code = 401
    code = "unauthorized"


class Forbidden(CrackscanError):
    status_code = 403
    code = "forbidden"


class NotFound(CrackscanError):
    status_code = 404
    code = "not_found"


class Conflict(CrackscanError):
    status_code = 409
    code = "conflict"


class PayloadTooLarge(CrackscanError):
    status_code = 413
    code = "payload_too_large"


class Unprocessable(CrackscanError):
    status_code = 422
    code = "unprocessable"


class TooManyRequests(CrackscanError):
    status_code = 429
    code = "too_many_requests"


class ServiceUnavailable(CrackscanError):
    status_code = 503
    code = "unavailable"
