"""The FastAPI application: create_app() wires settings, database, model registry and routes."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import FileResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from swagger_ui_bundle import swagger_ui_path

from app.auth import redact_keys_in_access_log
from app.deps import checked_inputs
from app.errors import install_error_handlers
from app.gate import ROUTE_TEMPLATE, RequestGate
from app.metrics import Metrics
from app.route_table import UNMATCHED
from app.routes import (
    apikeys,
    datasets,
    health,
    inspections,
    jobs,
    map_views,
    reviews,
    trained_models,
)
from app.routes.health import SupervisedWorker
from app.schemas.api import ERROR_RESPONSES
from app.security_headers import SecurityHeaders
from app.services.inspections import InspectionRunner
from app.services.jobs import JobQueue
from app.services.models import ModelRegistry
from app.services.photos import PhotoCache
from app.services.slots import Slots
from core.config import Settings, get_settings
from core.db import redacted_url, session_factory
from core.migrate import is_up_to_date
from core.presence import alive_workers
from core.statuses import JobStatus
from core.tables import TrainingJob
from models.device import select_device

log = logging.getLogger("crackscan.api")
SHARED_MAPS_ON_GPU = 4  # queued inspections whose tiles share forward passes on a GPU
DASHBOARD = Path(__file__).resolve().parent / "dashboard" / "index.html"
DOCS = DASHBOARD.parent / "docs.html"


def create_app(
    settings: Settings | None = None, embedded_worker: SupervisedWorker | None = None
) -> FastAPI:
    """The API; `embedded_worker` is the training worker that `crackscan serve` runs beside
    it, which /healthz describes and without which /readyz is not ready."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        redact_keys_in_access_log()  # after the server has set its logging up
        runner = _start_services(app, settings)
        yield
        runner.stop()

    app = FastAPI(
        title="crackscan",
        version="1",
        description="Crack maps from survey photos, and IGMSDA-trained crack classifiers.",
        lifespan=lifespan,
        responses=ERROR_RESPONSES,
        dependencies=[Depends(checked_inputs)],
        docs_url=None,  # served below from the package's files, not from a CDN
        redoc_url=None,
        redirect_slashes=False,  # its redirect is an absolute URL made from the Host header
    )
    app.state.embedded_worker = embedded_worker
    install_error_handlers(app)
    app.add_middleware(
        RequestGate,
        max_upload_bytes=settings.max_upload_mb << 20,
        max_json_bytes=settings.max_json_kb << 10,
    )
    app.add_middleware(SecurityHeaders, public_url=settings.public_url)
    app.middleware("http")(_observe)
    for module in (
        health, inspections, map_views, reviews, datasets, jobs, trained_models, apikeys
    ):  # fmt: skip
        app.include_router(module.router)
    app.include_router(pages)
    app.mount("/dashboard/assets", StaticFiles(directory=DASHBOARD.parent), name="dashboard")
    app.mount("/docs/assets", StaticFiles(directory=swagger_ui_path), name="swagger-ui")
    return app


def _start_services(app: FastAPI, settings: Settings) -> InspectionRunner:
    """Check the schema, open the database, start the inspection runner and load the model."""
    if not is_up_to_date(settings.db_url):
        raise RuntimeError(
            f"the database at {redacted_url(settings.db_url)} is not migrated: "
            "run `crackscan db upgrade`"
        )
    sessions = session_factory(settings.db_url)
    metrics = Metrics()
    registry = ModelRegistry(settings, sessions)
    runner = InspectionRunner(
        sessions,
        registry,
        settings.inspection_queue_size,
        settings.blob_chunk_bytes,
        metrics,
        settings.inspection_lease_s,
        shared_maps=SHARED_MAPS_ON_GPU if _inference_on_gpu(settings) else 1,
    )
    app.state.settings, app.state.sessions, app.state.metrics = settings, sessions, metrics
    app.state.registry, app.state.runner, app.state.jobs = registry, runner, JobQueue(settings)
    app.state.photos = PhotoCache(settings.review_cache_pixels, settings.photo_decode_mb << 20)
    app.state.dataset_slots = Slots(
        settings.dataset_upload_slots, "set uploads", "CRACKSCAN_DATASET_UPLOAD_SLOTS"
    )
    metrics.gauge(
        "crackscan_inspection_queue_depth",
        "Inspections waiting in this server's queue.",
        lambda: runner.depth,
    )
    metrics.gauge(
        "crackscan_training_jobs_queued",
        "Training jobs queued in the database.",
        lambda: _count_queued(sessions),
    )
    metrics.gauge(
        "crackscan_training_workers_alive",
        "Training workers whose presence row is fresher than CRACKSCAN_WORKER_PRESENCE_TTL_S.",
        lambda: _count_workers(sessions, settings.worker_presence_ttl_s),
    )
    runner.start()
    runner.recover()
    try:
        registry.warm_active()
    except Exception as exc:  # the service still starts; /readyz reports the problem
        log.warning("the active model could not be loaded: %s", exc)
    return runner


async def _observe(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    """Count every request and time it, by method, route template and status."""
    started = time.perf_counter()
    response = await call_next(request)
    route = request.scope.get(ROUTE_TEMPLATE, UNMATCHED)  # found by the gate: a template
    request.app.state.metrics.observe_request(
        request.method, route, response.status_code, time.perf_counter() - started
    )
    return response


pages = APIRouter(include_in_schema=False)


@pages.get("/dashboard")
def dashboard() -> FileResponse:
    """The internal dashboard: a static page that reads the JSON API."""
    return FileResponse(DASHBOARD)


@pages.get("/")
def root() -> RedirectResponse:
    return RedirectResponse("/dashboard")


@pages.get("/docs")
def docs() -> FileResponse:
    """Swagger UI over /openapi.json, its scripts and styles served by this server."""
    return FileResponse(DOCS)


def _inference_on_gpu(settings: Settings) -> bool:
    try:
        return select_device(settings.inference_device).type == "cuda"
    except ValueError:  # CUDA asked for but absent: the model registry reports it
        return False


def _count_workers(sessions: sessionmaker[Session], ttl_s: float) -> int:
    with sessions() as session:
        return alive_workers(session, ttl_s)


def _count_queued(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return int(
            session.scalar(select(func.count()).where(TrainingJob.status == JobStatus.QUEUED)) or 0
        )
