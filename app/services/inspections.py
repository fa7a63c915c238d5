"""The inspection runner: a bounded queue in the API process, served by one inference thread.

An accepted inspection is stored (image blob + row) before it is queued, so it
survives a restart. Each unfinished inspection is leased to the API process that holds
it; a keeper thread renews this process's leases and takes over inspections whose
lease ran out (their process died), so with several API processes none runs twice and
none is left behind.

When the database goes away, the thread keeps running: a finished map waits for the
database to come back (up to STORE_RETRY_S) before it is stored, and an inspection that
could not be claimed or stored is left unfinished; the keeper takes it again once the
database answers, as it is no longer in this process's queue.
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, or_, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from app.metrics import Metrics
from app.schemas.crackmap import crackmap_read
from app.services.models import ModelRegistry
from core.blobs import read_bytes, store_bytes
from core.errors import TooManyRequests
from core.statuses import INSPECTION_UNFINISHED, InspectionStatus
from core.tables import Inspection, utcnow
from models.inference import (
    CrackMap,
    MappedPhoto,
    PhotoRequest,
    Predictor,
    TileTable,
    render_overlay,
)

log = logging.getLogger("crackscan.inspections")
TILES_MEDIA = "application/vnd.crackscan.tiles+npz"
STORE_RETRY_S = 120.0  # how long a finished map waits for the database to come back


T = TypeVar("T")


class InspectionsDeleted(Exception):
    """Every inspection of a batch was deleted while it was mapped."""


@dataclass
class Claim:
    """A claimed inspection: what was asked, with which model, and the photo's bytes."""

    params: dict[str, Any]
    model_id: str | None
    data: bytes


class InspectionRunner:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        registry: ModelRegistry,
        capacity: int,
        chunk_bytes: int,
        metrics: Metrics,
        lease_s: float = 30.0,
        shared_maps: int = 1,
    ) -> None:
        """shared_maps: how many queued inspections may share forward passes (on a GPU,
        several photos fill its batches; on the CPU, 1 keeps each answer as early as it was)."""
        self.shared_maps = max(1, shared_maps)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.lease_s = lease_s
        self.sessions = sessions
        self.registry = registry
        self.capacity = capacity
        self.chunk_bytes = chunk_bytes
        self.metrics = metrics
        self._queue: queue.Queue[tuple[str, Future[str]] | None] = queue.Queue()
        self._lock = threading.Lock()
        self._reserved = 0
        self._queued: set[str] = set()  # in this process's queue or running: not recovered
        self._deleted: set[str] = set()  # deleted while queued or running here
        self._thread = threading.Thread(target=self._serve, name="inspections", daemon=True)
        self._stop = threading.Event()
        self._keeper = threading.Thread(target=self._keep_leases, name="leases", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._keeper.start()

    def stop(self) -> None:
        self._stop.set()
        self._queue.put(None)
        self._thread.join(timeout=30)
        self._keeper.join(timeout=5)

    def lease(self) -> dict[str, object]:
        """The columns that lease a new inspection row to this process."""
        return {
            "lease_owner": self.owner,
            "leased_until": utcnow() + timedelta(seconds=self.lease_s),
        }

    def _takeable(self) -> ColumnElement[bool]:
        """Unfinished, and held by this process or by nobody alive."""
        return Inspection.status.in_(INSPECTION_UNFINISHED) & or_(
            Inspection.lease_owner.is_(None),
            Inspection.lease_owner == self.owner,
            Inspection.leased_until.is_(None),
            Inspection.leased_until < utcnow(),
        )

    def renew(self) -> None:
        """Extend the leases of every unfinished inspection this process holds."""
        with self.sessions.begin() as session:
            session.execute(
                update(Inspection)
                .where(
                    Inspection.lease_owner == self.owner,
                    Inspection.status.in_(INSPECTION_UNFINISHED),
                )
                .values(leased_until=utcnow() + timedelta(seconds=self.lease_s))
            )

    def _keep_leases(self) -> None:
        while not self._stop.wait(self.lease_s / 3):
            try:
                self.renew()
                self.recover()
            except Exception as exc:  # the database is away: try again next round
                log.warning("inspection lease upkeep failed: %s", exc)

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
        with self._lock:
            self._queued.add(inspection_id)
        self._queue.put((inspection_id, future))
        return future

    def recover(self) -> int:
        """Take over and queue the unfinished inspections that no live process holds
        (at start-up: those a previous process accepted but did not finish)."""
        with self.sessions.begin() as session:
            with self._lock:
                mine = set(self._queued)
            ids = [
                i
                for i in session.scalars(
                    select(Inspection.id)
                    .where(self._takeable())
                    .order_by(Inspection.created_at)
                    .limit(max(0, self.capacity - self.depth) + len(mine))
                )
                if i not in mine
            ][: max(0, self.capacity - self.depth)]
            taken = []
            for inspection_id in ids:  # one by one: another process may take some first
                result = session.execute(
                    update(Inspection)
                    .where(Inspection.id == inspection_id, self._takeable())
                    .values(status=InspectionStatus.QUEUED, **self.lease())
                )
                if result.rowcount == 1:  # type: ignore[attr-defined]
                    taken.append(inspection_id)
        for inspection_id in taken:
            with self._lock:
                self._reserved += 1
            self.submit(inspection_id)
        if taken:
            log.info("took over %d unfinished inspections", len(taken))
        return len(taken)

    def _serve(self) -> None:
        stopping = False
        while not stopping and (item := self._queue.get()) is not None:
            items = [item]
            while len(items) < self.shared_maps:  # queued photos share forward passes
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stopping = True
                    break
                items.append(more)
            self._run_all(items)

    def _run_all(self, items: list[tuple[str, Future[str]]]) -> None:
        """Claim the inspections, map those of one model together, store each map."""
        claims: list[tuple[str, Future[str], Claim]] = []
        for inspection_id, future in items:
            claim = self._guarded(inspection_id, partial(self._claim, inspection_id))
            if isinstance(claim, Claim):
                claims.append((inspection_id, future, claim))
            else:
                self._done(inspection_id, future, claim)
        groups: dict[str, tuple[Predictor, list[tuple[str, Future[str], Claim]]]] = {}
        for inspection_id, future, claim in claims:
            try:
                model_id, predictor = self.registry.get(claim.model_id)
            except Exception as exc:
                status = self._guarded(inspection_id, partial(self._fail, inspection_id, str(exc)))
                self._done(inspection_id, future, status)
                continue
            groups.setdefault(model_id, (predictor, []))[1].append((inspection_id, future, claim))
        for model_id, (predictor, members) in groups.items():
            requests = [
                PhotoRequest(
                    c.data, c.params.get("tile"), c.params.get("stride"), c.params.get("threshold")
                )
                for _, _, c in members
            ]
            ids = [inspection_id for inspection_id, _, _ in members]
            try:
                results: list[MappedPhoto | Exception] = predictor.map_photos(
                    requests, partial(self._unless_all_deleted, ids)
                )
            except InspectionsDeleted as exc:
                results = [exc] * len(members)
            except Exception as exc:  # e.g. out of device memory: each inspection fails alone
                log.exception("mapping %d photos failed", len(members))
                results = [exc] * len(members)
            del requests
            for (inspection_id, future, _), result in zip(members, results, strict=True):
                status = self._guarded(
                    inspection_id, partial(self._finish, inspection_id, result, model_id)
                )
                self._done(inspection_id, future, status)

    def _unless_all_deleted(self, ids: list[str], _done: int, _total: int) -> None:
        """The mapping's progress callback: stop once every photo of the batch is deleted."""
        with self._lock:
            if all(i in self._deleted for i in ids):
                raise InspectionsDeleted(f"deleted while mapped: {', '.join(ids)}")

    def _guarded(self, inspection_id: str, step: Callable[[], T]) -> T | str:
        """Run one inspection's step; a failure ends that inspection, never the thread."""
        try:
            return step()
        except OperationalError as exc:  # the database is away: leave it to the keeper
            log.warning(
                "inspection %s left for later: database unavailable: %s", inspection_id, exc
            )
            return "interrupted"
        except Exception as exc:
            log.exception("inspection %s crashed", inspection_id)
            try:
                return self._fail(inspection_id, f"internal error: {exc}")
            except Exception as again:
                log.warning("inspection %s left unfinished: %s", inspection_id, again)
                return "interrupted"

    def forget(self, inspection_id: str) -> None:
        """The inspection was deleted: free its place in the queue now, not when its map
        is done, and stop mapping it once no photo in its batch is still wanted."""
        with self._lock:
            if inspection_id not in self._queued:
                return
            self._queued.discard(inspection_id)
            self._deleted.add(inspection_id)
            self._reserved = max(0, self._reserved - 1)

    def _done(self, inspection_id: str, future: Future[str], status: object) -> None:
        with self._lock:
            held = inspection_id in self._queued  # else forget() freed its place already
            self._queued.discard(inspection_id)
            self._deleted.discard(inspection_id)
        if held:
            self.release()
        if not future.done():  # a waiter that gave up may have cancelled it
            future.set_result(str(status))

    def _claim(self, inspection_id: str) -> Claim | str:
        """Mark it running under this process's lease and read its photo; or its status when
        it is gone, finished, or held by another live process."""
        with self.sessions.begin() as session:
            claimed = session.execute(
                update(Inspection)
                .where(Inspection.id == inspection_id, self._takeable())
                .values(status=InspectionStatus.RUNNING, **self.lease())
            )
            row = session.get(Inspection, inspection_id)
            if row is None:
                return "deleted"
            if claimed.rowcount != 1:  # type: ignore[attr-defined]
                return str(row.status)  # finished, or held by another live process
            return Claim(dict(row.params), row.model_id, read_bytes(session, row.image_blob_id))

    def _finish(self, inspection_id: str, result: MappedPhoto | Exception, model_id: str) -> str:
        """Store a map and its overlay (waiting out a short database outage), or the failure."""
        if isinstance(result, Exception):
            return self._fail(inspection_id, str(result))
        crack_map = result.crack_map
        overlay = render_overlay(result.preview, crack_map)
        self.metrics.observe_tiles(len(crack_map.table), crack_map.timings.get("tiles_s", 0.0))
        tiles_npz = crack_map.table.to_npz()
        waited = 0.0
        while True:
            try:
                return self._store(inspection_id, crack_map, overlay, tiles_npz, model_id)
            except OperationalError:
                if waited >= STORE_RETRY_S or self._stop.wait(1.0):
                    raise
                waited += 1.0

    def _store(
        self,
        inspection_id: str,
        crack_map: CrackMap,
        overlay: bytes,
        tiles_npz: bytes,
        model_id: str,
    ) -> str:
        """Store the map (its tiles as a compact table) and the overlay; mark it succeeded."""
        with self.sessions.begin() as session:
            row = session.get(Inspection, inspection_id)
            if row is None:  # deleted while it ran
                return "deleted"
            document = crackmap_read(
                crack_map, name=row.filename, model_id=model_id, with_tiles=False
            )
            row.overlay_blob_id = store_bytes(session, overlay, self.chunk_bytes, "image/png").id
            row.tiles_blob_id = store_bytes(session, tiles_npz, self.chunk_bytes, TILES_MEDIA).id
            row.crackmap = document.model_dump(mode="json")
            row.model_id = model_id
            row.status = InspectionStatus.SUCCEEDED
            row.finished_at = utcnow()
            row.lease_owner = row.leased_until = None
        return InspectionStatus.SUCCEEDED

    def _fail(self, inspection_id: str, reason: str) -> str:
        with self.sessions.begin() as session:
            row = session.get(Inspection, inspection_id)
            if row is None:
                return "deleted"
            row.status, row.error, row.finished_at = InspectionStatus.FAILED, reason, utcnow()
            row.lease_owner = row.leased_until = None
        return InspectionStatus.FAILED


def read_tile_table(session: Session, blob_id: str) -> TileTable:
    """A stored map's tile table (blocking: a blob read and an .npz decode)."""
    return TileTable.from_npz(read_bytes(session, blob_id))
