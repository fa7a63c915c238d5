"""The Celery app of the training workers, configured from Settings.

    celery -A worker.celery_app worker -Q training --concurrency 1

Long jobs: acks_late + reject_on_worker_lost (safe: training.run is idempotent and
resumes from the job's last checkpoint), prefetch 1, a visibility timeout longer
than any job, max_tasks_per_child 1 (GPU memory goes back after each job), soft
and hard time limits; see core/queue.py. CUDA is never touched in the parent:
tasks import the training code lazily, inside the forked child.

A warm shutdown (SIGTERM) stops the reaper, tells the pool processes (see
worker/stopping.py: the running job finishes its epoch or hands itself back), and
withdraws this worker's presence row once the pool has stopped.
"""

from __future__ import annotations

import contextlib
from typing import Any

from celery.signals import (
    worker_process_init,
    worker_ready,
    worker_shutdown,
    worker_shutting_down,
)

from core.config import get_settings
from core.db import dispose_engines
from core.queue import make_celery
from worker.presence import Presence
from worker.reaper import Reaper
from worker.stopping import STOP, forward_sigterm

settings = get_settings()
app = make_celery(settings, "crackscan-worker")
app.conf.include = ["worker.tasks.training"]
_reaper: Reaper | None = None
_presence: Presence | None = None
_consumer: Any = None


@worker_process_init.connect
def _fresh_engines(**_: Any) -> None:
    """A forked child must not reuse the parent's database connections."""
    dispose_engines()


@worker_ready.connect
def _start_reaper(sender: Any = None, **_: Any) -> None:
    global _reaper, _presence, _consumer
    _consumer = sender
    _presence = Presence(settings, str(getattr(sender, "hostname", "") or "celery"))
    _presence.start()
    _reaper = Reaper(settings, app)
    _reaper.start()


def pool_pids() -> list[int]:
    """The pool processes of this worker (none with the solo pool)."""
    with contextlib.suppress(Exception):
        return [int(pid) for pid in _consumer.pool.info.get("processes", [])]
    return []


@worker_shutting_down.connect
def _warm_shutdown(**_: Any) -> None:
    """Runs in the main's signal handler: no new sends from this worker, and the running
    job learns of the stop. The flag is set here too: a pool process forked from now on
    (replacing one whose task ended) inherits it, and hands back a message it is given
    during the shutdown instead of starting a job that would be killed."""
    STOP.ask()
    if _reaper is not None:
        _reaper.stop()
    forward_sigterm(pool_pids())


@worker_shutdown.connect
def _stop_reaper(**_: Any) -> None:
    if _reaper is not None:
        _reaper.stop()
    if _presence is not None:
        _presence.stop()
