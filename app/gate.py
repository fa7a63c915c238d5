"""The request gate: the first of the app's middleware to see a request.

It looks the route up before the router runs it (app.route_table), then
1. checks the API key for the route's scope, so a request without one is answered 401
   before a byte of its body is read (FastAPI reads a body before it solves the route's
   dependencies, where the key used to be checked);
2. caps the body for what the route takes: multipart uploads at CRACKSCAN_MAX_UPLOAD_MB,
   every other body at CRACKSCAN_MAX_JSON_KB, on Content-Length and while it streams in;
3. answers HEAD wherever GET is, as the GET without its body;
4. records the route's template for the request metrics (a bounded label).
"""

from __future__ import annotations

import anyio
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.auth import VERDICT, authorize, missing_key
from app.body_limit import BodySizeLimit
from app.errors import error_response
from app.route_table import UNMATCHED, RouteFacts, find_route

ROUTE_TEMPLATE = "crackscan.route"  # scope key: the route's path template, for metrics


class RequestGate:
    def __init__(self, app: ASGIApp, max_upload_bytes: int, max_json_bytes: int) -> None:
        self.app = app
        self.uploads = BodySizeLimit(app, max_upload_bytes, what="upload")
        self.json = BodySizeLimit(app, max_json_bytes, what="JSON body", slack=0)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route, scope_out, send = _route_of(scope, send)
        scope[ROUTE_TEMPLATE] = route.template if route else UNMATCHED
        if route is not None and route.scope is not None:
            refused = await _refusal(scope_out, route.scope)
            if refused is not None:
                if _has_body(scope):  # it stays unread: the connection cannot be reused
                    refused.headers["Connection"] = "close"
                await refused(scope_out, receive, send)
                return
        limit = self.uploads if route is not None and route.body == "form" else self.json
        await limit(scope_out, receive, send)


def _route_of(scope: Scope, send: Send) -> tuple[RouteFacts | None, Scope, Send]:
    """The route, the scope to pass on, and the send to answer with. A HEAD that only a
    GET route matches is passed on as that GET, and its answer is sent without a body."""
    app = scope["app"]
    route = find_route(app, scope)
    if scope["method"] != "HEAD" or (route is not None and route.full):
        return route, scope, send
    as_get = dict(scope, method="GET")
    got = find_route(app, as_get)
    if got is None or not got.full:
        return route, scope, send

    async def without_body(message: Message) -> None:
        if message["type"] == "http.response.body":
            message = {**message, "body": b""}
        await send(message)

    return got, as_get, without_body


async def _refusal(scope: Scope, needed: str) -> JSONResponse | None:
    """None when the request's key has the scope (recorded on the request's state for the
    route's own dependency); else the error answer, made before the body is touched."""
    state = scope["app"].state
    if state.settings.auth_disabled:
        return None
    key = _header(scope, b"x-api-key")
    try:
        if not key:
            raise missing_key()
        key_id = await anyio.to_thread.run_sync(authorize, state, key, needed)
    except Exception as exc:
        response = error_response(exc)
        if response is None:
            raise
        return response
    request_state = scope.setdefault("state", {})
    request_state[VERDICT], request_state["api_key_id"] = needed, key_id
    return None


def _has_body(scope: Scope) -> bool:
    length = _header(scope, b"content-length")
    return _header(scope, b"transfer-encoding") is not None or (length or "0").strip() != "0"


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or []:
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None
