"""The inspection runner: a bounded queue in the API process, served by one inference thread.

An accepted inspection is stored (image blob + row) before it is queued, so it
survives a restart: `recover()` re-queues every unfinished one at start-up.
"""

from __future__ import annotations

import logging
import queue
import threading
from concurrent.futures import Future

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.metrics import Metrics
from app.schemas.crackmap import crackmap_read
from app.services.models import ModelRegistry
from core.blobs import read_bytes, store_bytes
from core.errors import TooManyRequests
from core.tables import Inspection, utcnow
from models.inference import open_image, render_overlay

log = logging.getLogger("crackscan.inspections")
UNFINISHED = ("queued", "running")


class InspectionRunner:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        registry: ModelRegistry,
        capacity: int,
        chunk_bytes: int,
        metrics: Metrics,
    ) -> None:
        self.sessions = sessions
        self.registry = registry
        self.capacity = capacity
        self.chunk_bytes = chunk_bytes
        self.metrics = metrics
        self._queue: queue.Queue[tuple[str, Future[str]] | None] = queue.Queue()
        self._lock = threading.Lock()
        self._reserved = 0
        self._thread = threading.Thread(target=self._serve, name="inspections", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)

    @property
    def depth(self) -> int:
        """Inspections accepted and not finished."""
        with self._lock:
            return self._reserved

    def reserve(self) -> None:
        """Take a place in the queue before anything is stored; 429 when it is full."""
        with self._lock:
            if self._reserved >= self.capacity:
                raise TooManyRequests(
                    f"the inspection queue is full ({self.capacity} waiting): retry later",
                    headers={"Retry-After": "5"},
                )
            self._reserved += 1

    def release(self) -> None:
        with self._lock:
            self._reserved = max(0, self._reserved - 1)

    def submit(self, inspection_id: str) -> Future[str]:
        """Queue a stored inspection (after reserve()); the future resolves to its final status."""
        future: Future[str] = Future()
        self._queue.put((inspection_id, future))
        return future

    def recover(self) -> int:
        """Re-queue every inspection a previous process accepted but did not finish."""
        with self.sessions.begin() as session:
            ids = session.scalars(
                select(Inspection.id)
                .where(Inspection.status.in_(UNFINISHED))
                .order_by(Inspection.created_at)
            ).all()
            for row in session.scalars(select(Inspection).where(Inspection.id.in_(ids))):
                row.status = "queued"
        for inspection_id in ids:
            with self._lock:
                self._reserved += 1
            self.submit(inspection_id)
        if ids:
            log.info("re-queued %d unfinished inspections", len(ids))
        return len(ids)

    def _serve(self) -> None:
        while (item := self._queue.get()) is not None:
            inspection_id, future = item
            try:
                status = self._run(inspection_id)
            except Exception as exc:  # never let the thread die
                log.exception("inspection %s crashed", inspection_id)
                status = self._fail(inspection_id, f"internal error: {exc}")
            finally:
                self.release()
            if not future.done():  # a waiter that gave up may have cancelled it
                future.set_result(status)

    def _run(self, inspection_id: str) -> str:
        with self.sessions.begin() as session:
            row = session.get(Inspection, inspection_id)
            if row is None or row.status not in UNFINISHED:
                return row.status if row else "deleted"
            row.status = "running"
            params = dict(row.params)
            model_id = row.model_id
            data = read_bytes(session, row.image_blob_id)
        try:
            model_id, predictor = self.registry.get(model_id)
            image = open_image(data, predictor.config.max_pixels)
            del data
            crack_map = predictor.inspect_image(
                image, params.get("tile"), params.get("stride"), params.get("threshold")
            )
            overlay = render_overlay(image, crack_map)
        except Exception as exc:
            return self._fail(inspection_id, str(exc))
        self.metrics.observe_tiles(len(crack_map.tiles), crack_map.timings.get("tiles_s", 0.0))
        with self.sessions.begin() as session:
            row = session.get(Inspection, inspection_id)
            if row is None:  # deleted while it ran
                return "deleted"
            document = crackmap_read(crack_map, name=row.filename, model_id=model_id)
            row.overlay_blob_id = store_bytes(session, overlay, self.chunk_bytes, "image/png").id
            row.crackmap = document.model_dump(mode="json")
            row.model_id = model_id
            row.status = "succeeded"
            row.finished_at = utcnow()
        return "succeeded"

    def _fail(self, inspection_id: str, reason: str) -> str:
        with self.sessions.begin() as session:
            row = session.get(Inspection, inspection_id)
            if row is None:
                return "deleted"
            row.status, row.error, row.finished_at = "failed", reason, utcnow()
        return "failed"
