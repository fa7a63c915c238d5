"""The Celery app of the training workers, configured from Settings.

    celery -A worker.celery_app worker -Q training --concurrency 1

Long jobs: acks_late + reject_on_worker_lost (safe: training.run is idempotent and
resumes from the job's last checkpoint), prefetch 1, a visibility timeout longer
than any job, max_tasks_per_child 1 (GPU memory goes back after each job), soft
and hard time limits; see core/queue.py. CUDA is never touched in the parent:
tasks import the training code lazily, inside the forked child.
"""

from __future__ import annotations

from typing import Any

from celery.signals import worker_process_init, worker_ready, worker_shutdown

from core.config import get_settings
from core.db import dispose_engines
from core.queue import make_celery
from worker.reaper import Reaper

settings = get_settings()
app = make_celery(settings, "crackscan-worker")
app.conf.include = ["worker.tasks.training"]
_reaper: Reaper | None = None


@worker_process_init.connect
def _fresh_engines(**_: Any) -> None:
    """A forked child must not reuse the parent's database connections."""
    dispose_engines()


@worker_ready.connect
def _start_reaper(sender: Any = None, **_: Any) -> None:
    global _reaper
    _reaper = Reaper(settings, app)
    _reaper.start()


@worker_shutdown.connect
def _stop_reaper(**_: Any) -> None:
    if _reaper is not None:
        _reaper.stop()
