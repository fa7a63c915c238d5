"""The reaper: re-sends jobs that no worker holds, so none is left stuck.

A job is re-sent when it is queued but was never handed to the broker, or when
it is running and its heartbeat is older than the lease (its worker died). The
task then claims it atomically, resumes from the last checkpoint, or marks it
failed once it has been started too many times.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from celery import Celery
from sqlalchemy import or_, select

from core.config import Settings
from core.db import transaction
from core.queue import send_training_run
from core.statuses import JobStatus
from core.tables import TrainingJob, utcnow

log = logging.getLogger("crackscan.reaper")


def orphaned_jobs(settings: Settings) -> list[str]:
    """Ids of jobs to send (again) now, oldest first.

    - queued, never handed to the broker (it was down when the job was created);
    - queued, sent longer ago than job_requeue_s (the broker lost the message);
    - running with a heartbeat older than the lease (its worker died).
    """
    now = utcnow()
    stale = now - timedelta(seconds=settings.job_lease_s)
    lost = now - timedelta(seconds=settings.job_requeue_s)
    with transaction(settings.db_url) as session:
        return list(
            session.scalars(
                select(TrainingJob.id)
                .where(
                    or_(
                        (TrainingJob.status == JobStatus.QUEUED)
                        & or_(TrainingJob.enqueued_at.is_(None), TrainingJob.enqueued_at < lost),
                        (TrainingJob.status == JobStatus.RUNNING)
                        & or_(TrainingJob.heartbeat_at.is_(None), TrainingJob.heartbeat_at < stale)
                        & or_(TrainingJob.enqueued_at.is_(None), TrainingJob.enqueued_at < stale),
                    )
                )
                .order_by(TrainingJob.created_at)
            )
        )


def mark_sent(settings: Settings, job_id: str) -> None:
    """Record that the broker took the job's message (only after it did)."""
    with transaction(settings.db_url) as session:
        row = session.get(TrainingJob, job_id)
        if row is not None:
            row.enqueued_at = utcnow()


class Reaper:
    def __init__(self, settings: Settings, app: Celery) -> None:
        self.settings = settings
        self.app = app
        self.interval = max(1.0, settings.job_lease_s / 3)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="reaper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def sweep(self) -> list[str]:
        """Send each orphaned job; returns the ids the broker took.

        A job is marked as sent only after send_task returned, so a broker that is
        down leaves it to the next sweep instead of stranding it.
        """
        sent = []
        for job_id in orphaned_jobs(self.settings):
            log.warning("sending training job %s (no live worker holds it)", job_id)
            try:
                send_training_run(self.app, job_id, max_retries=1)
            except Exception as exc:  # broker down: the next sweep tries again
                log.warning("could not send job %s (broker unreachable?): %s", job_id, exc)
                break
            mark_sent(self.settings, job_id)
            sent.append(job_id)
        return sent

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.sweep()
            except Exception as exc:  # database or broker down: try again next round
                log.warning("reaper sweep failed: %s", exc)
            self._stop.wait(self.interval)
