"""API-key authentication with scopes (X-API-Key header)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Header, Request

from core.apikeys import SCOPES, has_scope, verify_api_key
from core.errors import Forbidden, Unauthorized


def require(scope: str) -> Callable[..., None]:
    """A dependency that admits requests whose key has `scope` (admin has every scope)."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}: the scopes are {SCOPES}")

    def check(request: Request, x_api_key: Annotated[str | None, Header()] = None) -> None:
        state = request.app.state
        request.state.api_key_id = None  # who asked: recorded with what the request stores
        if state.settings.auth_disabled:
            return
        if not x_api_key:
            raise Unauthorized(
                "missing API key: send it in the X-API-Key header", field="X-API-Key"
            )
        with state.sessions.begin() as session:
            row = verify_api_key(session, x_api_key)
            if row is None:
                raise Unauthorized("invalid or revoked API key", field="X-API-Key")
            if not has_scope(list(row.scopes), scope):
                raise Forbidden(
                    f"this key lacks the '{scope}' scope (it has {', '.join(row.scopes)})"
                )
            request.state.api_key_id = row.id

    return check


ReadScope = Depends(require("read"))
InspectScope = Depends(require("inspect"))
TrainScope = Depends(require("train"))
AdminScope = Depends(require("admin"))
