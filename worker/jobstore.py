"""The job row as the source of truth: claiming a lease, heartbeats, progress and results."""

from __future__ import annotations

import json
import os
import socket
import tempfile
import threading
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import or_, select, update

from core.blobs import delete_blob, store_bytes, write_to_file
from core.config import Settings
from core.db import transaction
from core.feedback import export_labels
from core.statuses import JOB_FINAL, JobStatus
from core.tables import Dataset, EpochMetric, NetworkModel, TrainingJob, utcnow


def new_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass
class Claim:
    """What a worker holds after claiming a job."""

    job_id: str
    owner: str
    attempts: int
    config: dict[str, Any]
    dataset_ids: list[str]
    base_model_id: str | None
    last_checkpoint_blob_id: str | None
    feedback: bool = False


def claim(settings: Settings, job_id: str, owner: str) -> Claim | str:
    """Take the job's lease atomically; returns the Claim, or why it was not taken.

    Taken when the job is queued, or running with a heartbeat older than the lease
    (its worker died). A live duplicate delivery therefore never runs it twice.
    """
    stale = utcnow() - timedelta(seconds=settings.job_lease_s)
    with transaction(settings.db_url) as session:
        result = session.execute(
            update(TrainingJob)
            .where(
                TrainingJob.id == job_id,
                TrainingJob.cancel_requested.is_(False),
                or_(
                    TrainingJob.status == JobStatus.QUEUED,
                    (TrainingJob.status == JobStatus.RUNNING)
                    & or_(TrainingJob.heartbeat_at.is_(None), TrainingJob.heartbeat_at < stale),
                ),
            )
            .values(
                status=JobStatus.RUNNING,
                lease_owner=owner,
                heartbeat_at=utcnow(),
                attempts=TrainingJob.attempts + 1,
            )
        )
        row = session.get(TrainingJob, job_id)
        if row is None:
            return "no such job"
        if result.rowcount != 1:  # type: ignore[attr-defined]
            if row.cancel_requested and row.status not in JOB_FINAL:
                row.status, row.finished_at = JobStatus.CANCELLED, utcnow()
                return "cancelled before it started"
            return f"job is {row.status}" + (
                f", held by {row.lease_owner}" if row.status == JobStatus.RUNNING else ""
            )
        row.started_at = row.started_at or utcnow()
        return Claim(
            job_id,
            owner,
            row.attempts,
            dict(row.config),
            list(row.dataset_ids or ([row.dataset_id] if row.dataset_id else [])),
            row.base_model_id,
            row.last_checkpoint_blob_id,
            row.feedback,
        )


def finish(
    settings: Settings, claim_: Claim, status: str, error: str | None = None, **values: Any
) -> bool:
    """Write the final status if this worker still holds the lease."""
    with transaction(settings.db_url) as session:
        result = session.execute(
            update(TrainingJob)
            .where(TrainingJob.id == claim_.job_id, TrainingJob.lease_owner == claim_.owner)
            .values(status=status, error=error, finished_at=utcnow(), lease_owner=None, **values)
        )
        return result.rowcount == 1  # type: ignore[attr-defined]


def hand_back(settings: Settings, claim_: Claim) -> bool:
    """A clean stop: the job goes back to the queue, resumable from its last checkpoint.

    The start is not counted (attempts counts the starts that died), and enqueued_at is
    cleared so that the next reaper sweep, of this worker's successor or of any other
    worker, sends it again at once.
    """
    with transaction(settings.db_url) as session:
        result = session.execute(
            update(TrainingJob)
            .where(TrainingJob.id == claim_.job_id, TrainingJob.lease_owner == claim_.owner)
            .values(
                status=JobStatus.QUEUED,
                lease_owner=None,
                heartbeat_at=None,
                enqueued_at=None,
                attempts=TrainingJob.attempts - 1,
            )
        )
        return result.rowcount == 1  # type: ignore[attr-defined]


def fetch_blob(settings: Settings, blob_id: str, folder: Path, name: str) -> Path:
    path = folder / name
    with transaction(settings.db_url) as session:
        write_to_file(session, blob_id, path)
    return path


def export_feedback(settings: Settings, folder: Path, seed: int) -> tuple[Path, dict[str, Any]]:
    """Every stored tile label as a labelled set (split by photo) in `folder`; and its summary."""
    path = folder / "feedback.zip"
    with transaction(settings.db_url) as session:
        summary = export_labels(session, path, seed, max_pixels=settings.max_image_pixels)
    return path, summary


def dataset_info(settings: Settings, dataset_id: str) -> tuple[str, list[str], int | None]:
    """(blob id, defect classes, masks tile side or None) of a stored set."""
    with transaction(settings.db_url) as session:
        row = session.get(Dataset, dataset_id)
        if row is None:
            raise LookupError(f"dataset {dataset_id} no longer exists")
        return row.blob_id, list(row.defect_classes), row.tile_px


def model_blob(settings: Settings, model_id: str) -> str:
    with transaction(settings.db_url) as session:
        row = session.get(NetworkModel, model_id)
        if row is None:
            raise LookupError(f"base model {model_id} no longer exists")
        return row.blob_id


class Heartbeat:
    """Renews the lease every few seconds from a thread, and reads the cancel flag.

    When the process dies the heartbeat stops, so the lease goes stale and the
    reaper hands the job to another worker.
    """

    def __init__(self, settings: Settings, claim_: Claim) -> None:
        self.settings = settings
        self.claim = claim_
        self.cancel_requested = False
        self.lost = False
        self.progress: dict[str, Any] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="heartbeat", daemon=True)
        self.interval = min(5.0, max(0.5, settings.job_lease_s / 6))

    def __enter__(self) -> Heartbeat:
        self.beat()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def should_stop(self) -> bool:
        return self.cancel_requested or self.lost

    def beat(self) -> None:
        values: dict[str, Any] = {"heartbeat_at": utcnow()}
        for key in ("progress", "epoch", "step"):
            if key in self.progress:
                values[key] = self.progress[key]
        with transaction(self.settings.db_url) as session:
            result = session.execute(
                update(TrainingJob)
                .where(
                    TrainingJob.id == self.claim.job_id, TrainingJob.lease_owner == self.claim.owner
                )
                .values(**values)
            )
            if result.rowcount != 1:  # type: ignore[attr-defined]
                self.lost = True
                return
            flag = session.scalar(
                select(TrainingJob.cancel_requested).where(TrainingJob.id == self.claim.job_id)
            )
            self.cancel_requested = bool(flag)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.beat()
            except Exception:  # the database is briefly away: keep training, beat again soon
                continue


def save_epoch(
    settings: Settings,
    claim_: Claim,
    record: dict[str, Any],
    checkpoint: bytes,
    progress: float | None = None,
) -> None:
    """Store one epoch's metrics and the job's one resumable checkpoint, in one transaction.

    The checkpoint replaces the previous one; it carries the best epoch's weights too, so
    one copy per job is all a resume needs.
    """
    chunk = settings.blob_chunk_bytes
    with transaction(settings.db_url) as session:
        job = session.get(TrainingJob, claim_.job_id)
        if job is None or job.lease_owner != claim_.owner:
            raise PermissionError("lost the lease on this job")
        old_last = job.last_checkpoint_blob_id
        job.last_checkpoint_blob_id = store_bytes(session, checkpoint, chunk).id
        metric = session.scalar(
            select(EpochMetric).where(
                EpochMetric.job_id == job.id, EpochMetric.epoch == record["epoch"]
            )
        )
        if metric is None:
            metric = EpochMetric(job_id=job.id, epoch=record["epoch"])
            session.add(metric)
        metric.train_loss = float(record["train_loss"])
        metric.val_macro_f1 = float(record["val_macro_f1"])
        metric.metrics = json.loads(json.dumps(record, default=float))
        job.epoch = int(record["epoch"])
        if progress is not None:
            job.progress = progress
        job.heartbeat_at = utcnow()
        session.flush()
        delete_blob(session, old_last)


def temp_dir() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="crackscan-job-")
