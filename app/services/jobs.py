"""Enqueue training jobs to Celery by task name, after the commit that created them."""

from __future__ import annotations

import logging

from celery import Celery

from core.config import Settings
from core.queue import TRAINING_QUEUE, TRAINING_RUN, make_celery

log = logging.getLogger("crackscan.jobs")


class JobQueue:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._celery: Celery | None = None

    @property
    def celery(self) -> Celery:
        if self._celery is None:
            self._celery = make_celery(self.settings, "crackscan-api")
        return self._celery

    def enqueue(self, job_id: str) -> bool:
        """Send training.run; False when the broker cannot be reached (the caller answers 503)."""
        try:
            self.celery.send_task(
                TRAINING_RUN,
                args=[job_id],
                queue=TRAINING_QUEUE,
                retry=True,
                retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5},
            )
            return True
        except Exception as exc:  # broker down
            log.warning("could not enqueue job %s: %s", job_id, exc)
            return False
