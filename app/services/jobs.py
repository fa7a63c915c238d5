"""Enqueue training jobs to Celery by task name, after the commit that created them."""

from __future__ import annotations

import logging

from celery import Celery

from core.config import Settings
from core.queue import make_celery, send_training_run

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
            send_training_run(self.celery, job_id, max_retries=2)
            return True
        except Exception as exc:  # broker down
            log.warning("could not enqueue job %s: %s", job_id, exc)
            return False
