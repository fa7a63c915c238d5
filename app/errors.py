"""One JSON error shape for every 4xx and 5xx: {"error": {"status", "code", "message", "field"}}."""

from __future__ import annotations

import logging
import re
import tempfile
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.route_table import allowed_methods
from core.errors import CrackscanError

log = logging.getLogger("crackscan.api")
DATABASE_RETRY_AFTER_S = 5


_ADDRESS = re.compile(r"\b0x[0-9a-fA-F]{6,}\b")
_TEMP_PATH = re.compile(re.escape(tempfile.gettempdir().rstrip("/")) + r"/[^\s'\"]*")


def scrub(message: str) -> str:
    """A message fit to show a client: no temporary paths (the file name stays) and no heap
    addresses (from an object's repr), which tell an attacker about the server."""
    message = _TEMP_PATH.sub(lambda m: m.group(0).rstrip("/").rsplit("/", 1)[-1], message)
    return _ADDRESS.sub("0x…", message)


def error_body(
    status: int, code: str, message: str, field: str | None = None, **extra: Any
) -> dict[str, Any]:
    body = {"status": status, "code": code, "message": scrub(message), "field": field, **extra}
    return {"error": body}


def error_response(exc: Exception) -> JSONResponse | None:
    """The answer to a domain error or an unreachable database; None for anything else."""
    if isinstance(exc, CrackscanError):
        body = error_body(exc.status_code, exc.code, exc.message, exc.field, **exc.extra)
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)
    if isinstance(exc, OperationalError | InterfaceError):
        log.warning("database unavailable: %s", type(exc).__name__)
        return JSONResponse(
            error_body(503, "database_unavailable", "the database is unavailable; try again"),
            status_code=503,
            headers={"Retry-After": str(DATABASE_RETRY_AFTER_S)},
        )
    return None


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(CrackscanError)
    @app.exception_handler(OperationalError)
    @app.exception_handler(InterfaceError)
    async def _known(_: Request, exc: Exception) -> JSONResponse:
        response = error_response(exc)
        assert response is not None  # registered for the errors it answers
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {}
        loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path", "form")]
        field = ".".join(loc) or None
        message = (
            f"{field}: {first.get('msg', 'invalid')}"
            if field
            else str(first.get("msg", "invalid request"))
        )
        details = [
            {
                "field": ".".join(str(p) for p in e.get("loc", ())),
                "message": scrub(str(e.get("msg"))),
            }
            for e in errors
        ]
        return JSONResponse(
            error_body(422, "validation_error", message, field, details=details), status_code=422
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:  # every method of the path, not only one route's
            headers["Allow"] = ", ".join(allowed_methods(request.app, request.url.path))
        return JSONResponse(
            error_body(exc.status_code, code, str(exc.detail)),
            status_code=exc.status_code,
            headers=headers or None,
        )

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return JSONResponse(
            error_body(500, "internal_error", f"internal error: {type(exc).__name__}"),
            status_code=500,
        )
