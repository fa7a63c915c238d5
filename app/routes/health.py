"""/healthz, /readyz and /metrics."""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from sqlalchemy import text

from app.errors import error_body
from app.metrics import CONTENT_TYPE
from core.presence import alive_workers

router = APIRouter(tags=["health"])
READY_DB_TIMEOUT_S = 3.0


class SupervisedWorker(Protocol):
    """The training worker `crackscan serve` runs and restarts (app/cli/embedded_worker.py)."""

    restarts: int

    @property
    def pid(self) -> int | None: ...

    def state(self) -> str: ...


@router.get("/healthz")
def healthz(request: Request) -> dict[str, Any]:
    """The process is alive; `auth` says whether requests need an X-API-Key ("api-key").

    Under `crackscan serve` with its embedded worker, `embedded_worker` says whether that
    worker runs ("running") or died and is being replaced ("restarting"); this answer
    reads no database, so it stays fast while the database is away.
    """
    state = request.app.state
    body: dict[str, Any] = {
        "status": "ok",
        "auth": "none" if state.settings.auth_disabled else "api-key",
    }
    worker: SupervisedWorker | None = state.embedded_worker
    if worker is not None:
        body["embedded_worker"] = {
            "state": worker.state(),
            "pid": worker.pid,
            "restarts": worker.restarts,
        }
    return body


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    """The database answers and the active model is loaded and warmed up; under
    `crackscan serve` with its embedded worker, that worker is alive too.

    `training_workers` counts the workers whose presence row is fresh (any broker); with
    none, training jobs wait. Without an embedded worker that is reported, not a 503:
    the API serves inspections without one.
    """
    state = request.app.state
    ttl_s = state.settings.worker_presence_ttl_s

    def ping() -> int:
        with state.sessions() as session:
            session.execute(text("SELECT 1"))
            return alive_workers(session, ttl_s)

    try:
        workers = await asyncio.wait_for(asyncio.to_thread(ping), timeout=READY_DB_TIMEOUT_S)
    except Exception as exc:
        reason = "no answer in time" if isinstance(exc, TimeoutError) else type(exc).__name__
        return JSONResponse(
            error_body(503, "unavailable", f"database unreachable ({reason})"),
            status_code=503,
            headers={"Retry-After": "5"},
        )
    embedded: SupervisedWorker | None = state.embedded_worker
    if embedded is not None and (workers == 0 or embedded.state() != "running"):
        why = embedded.state()
        if why == "running":
            why = "running but has not reported in yet (starting, or stuck)"
        return JSONResponse(
            error_body(
                503,
                "unavailable",
                f"no training worker alive: the embedded worker is {why}; training jobs "
                "wait until it is back",
            ),
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
    return JSONResponse(
        {"status": "ready", "model_id": state.registry.active_id(), "training_workers": workers}
    )


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(request: Request) -> Response:
    """Prometheus text format. Sync: a gauge reads the database, so it runs in a thread."""
    return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE)
