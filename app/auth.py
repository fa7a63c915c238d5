"""API-key authentication with scopes (X-API-Key header).

The key is checked by app.gate before the route runs, so before a byte of a body is read
(FastAPI reads a route's body before it solves its dependencies). `require(scope)` is the
route's declaration of the scope it needs: the gate reads it from the route, and the
dependency itself only confirms the gate's verdict (or checks the key where no gate ran).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, Header, Request

from app.route_table import SCOPE_ATTRIBUTE
from core.apikeys import SCOPES, has_scope, verify_api_key
from core.errors import Forbidden, Unauthorized

_KEY_IN_URL = re.compile(
    r"(?i)(?<=[?&])((?:x[-_]?)?api[-_]?key|key|token|access[-_]?token)=[^&#\s]*"
)
_KEY_ANYWHERE = re.compile(r"cs_[A-Za-z0-9_-]{16,}")  # the form of this service's keys
VERDICT = "authorized_scope"  # request.state: the scope the gate found the key to have


class RedactKeys(logging.Filter):
    """Keep API keys that a client put in a URL out of the access log: the key is never
    read from the query (it goes in X-API-Key), but uvicorn logs the URL as sent."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        return True


def redact(text: str) -> str:
    return _KEY_ANYWHERE.sub("cs_[redacted]", _KEY_IN_URL.sub(r"\1=[redacted]", text))


def redact_keys_in_access_log() -> None:
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactKeys) for f in access.filters):
        access.addFilter(RedactKeys())


def missing_key() -> Unauthorized:
    return Unauthorized("missing API key: send it in the X-API-Key header", field="X-API-Key")


def authorize(state: Any, key: str | None, scope: str) -> str:
    """The id of the live key that has `scope` (blocking: a database read, and at most one
    write a minute); Unauthorized or Forbidden otherwise."""
    if not key:
        raise missing_key()
    with state.sessions.begin() as session:
        row = verify_api_key(session, key)
        if row is None:
            raise Unauthorized("invalid or revoked API key", field="X-API-Key")
        if not has_scope(list(row.scopes), scope):
            raise Forbidden(f"this key lacks the '{scope}' scope (it has {', '.join(row.scopes)})")
        return str(row.id)


def require(scope: str) -> Callable[..., None]:
    """A dependency that admits requests whose key has `scope` (admin has every scope)."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}: the scopes are {SCOPES}")

    def check(request: Request, x_api_key: Annotated[str | None, Header()] = None) -> None:
        state = request.app.state
        if state.settings.auth_disabled:
            request.state.api_key_id = None  # who asked: recorded with what the request stores
            return
        if getattr(request.state, VERDICT, None) == scope:  # the gate checked it already
            return
        request.state.api_key_id = authorize(state, x_api_key, scope)

    setattr(check, SCOPE_ATTRIBUTE, scope)
    return check


ReadScope = Depends(require("read"))
InspectScope = Depends(require("inspect"))
TrainScope = Depends(require("train"))
AdminScope = Depends(require("admin"))
