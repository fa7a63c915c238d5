"""/healthz, /readyz and /metrics."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from sqlalchemy import text

from app.errors import error_body
from app.metrics import CONTENT_TYPE

router = APIRouter(tags=["health"])
READY_DB_TIMEOUT_S = 3.0


@router.get("/healthz")
def healthz(request: Request) -> dict[str, str]:
    """The process is alive; `auth` says whether requests need an X-API-Key ("api-key")."""
    disabled = request.app.state.settings.auth_disabled
    return {"status": "ok", "auth": "none" if disabled else "api-key"}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    """The database answers and the active model is loaded and warmed up."""
    state = request.app.state

    def ping() -> None:
        with state.sessions() as session:
            session.execute(text("SELECT 1"))

    try:
        await asyncio.wait_for(asyncio.to_thread(ping), timeout=READY_DB_TIMEOUT_S)
    except Exception as exc:
        reason = "no answer in time" if isinstance(exc, TimeoutError) else type(exc).__name__
        return JSONResponse(
            error_body(503, "unavailable", f"database unreachable ({reason})"),
            status_code=503,
            headers={"Retry-After": "5"},
        )
    try:
        ready = await asyncio.to_thread(state.registry.warm_active)
    except Exception as exc:
        return JSONResponse(
            error_body(503, "unavailable", f"the active model failed to load: {exc}"),
            status_code=503,
        )
    if not ready:
        return JSONResponse(
            error_body(503, "unavailable", "no active model: train or import one and activate it"),
            status_code=503,
        )
    return JSONResponse({"status": "ready", "model_id": state.registry.active_id()})


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(request: Request) -> Response:
    """Prometheus text format. Sync: a gauge reads the database, so it runs in a thread."""
    return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE)
