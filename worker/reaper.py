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
from core.queue import TRAINING_QUEUE, TRAINING_RUN
from core.tables import TrainingJob, utcnow

log = logging.getLogger("crackscan.reaper")


def orphaned_jobs(settings: Settings) -> list[str]:
    """Ids of jobs to re-send now; marks them as enqueued."""
    now = utcnow()
    stale = now - timedelta(seconds=settings.job_lease_s)
    with transaction(settings.db_url) as session:
        rows = session.scalars(
            select(TrainingJob).where(
                or_(
                    (TrainingJob.status == "queued") & TrainingJob.enqueued_at.is_(None),
                    (TrainingJob.status == "running")
                    & or_(TrainingJob.heartbeat_at.is_(None), TrainingJob.heartbeat_at < stale)
                    & or_(TrainingJob.enqueued_at.is_(None), TrainingJob.enqueued_at < stale),
                )
            )
        ).all()
        for row in rows:
            row.enqueued_at = now
        return [row.id for row in rows]


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
        ids = orphaned_jobs(self.settings)
        for job_id in ids:
            log.warning("re-sending training job %s (no live worker holds it)", job_id)
            self.app.send_task(TRAINING_RUN, args=[job_id], queue=TRAINING_QUEUE)
        return ids

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.sweep()
            except Exception as exc:  # database or broker down: try again next round
                log.warning("reaper sweep failed: %s", exc)
            self._stop.wait(self.interval)
