"""A clean stop of a worker: the running job finishes its epoch or stops at a step, and is
handed back.

SIGTERM reaches a pool process in two ways: from the Celery main, which forwards it when
its warm shutdown starts (worker_shutting_down), or directly, when a service manager
signals every process of the worker. Either way the pool process only records when the
stop was asked; the running job reads that between steps:

- once the epoch under way has ended and its checkpoint is stored, it stops;
- if the epoch cannot end within `epoch_window_s` of the request, it stops at the next
  step, and its last stored checkpoint (the epoch before) is its resumable point.

It then raises WorkerStopping, and the task hands the job back as queued, without
counting the start against CRACKSCAN_JOB_MAX_ATTEMPTS: only a start that died counts.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable, Iterator
from types import FrameType

STOP_MARGIN_S = 10.0  # of the stop grace: to hand the job back and let the worker exit


class WorkerStopping(Exception):
    """Raised in a running job when its worker is stopping."""


class StopFlag:
    """When this process was asked to stop (monotonic seconds), or None.

    Set from a signal handler: a plain attribute write, no lock is taken.
    """

    def __init__(self) -> None:
        self.asked_at: float | None = None

    def ask(self) -> None:
        if self.asked_at is None:
            self.asked_at = time.monotonic()

    @property
    def asked(self) -> bool:
        return self.asked_at is not None

    def past(self, window_s: float) -> bool:
        """Asked more than window_s ago."""
        return self.asked_at is not None and time.monotonic() - self.asked_at >= window_s


STOP = StopFlag()


def epoch_window_s(grace_s: float) -> float:
    """How long a running epoch may go on after the stop was asked: what the grace
    (CRACKSCAN_WORKER_STOP_GRACE_S) leaves after the hand-back."""
    return max(0.0, grace_s - STOP_MARGIN_S)


def _on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    STOP.ask()


@contextlib.contextmanager
def sigterm_asks_to_stop() -> Iterator[None]:
    """While a job runs in a pool process, SIGTERM asks for a clean stop instead of
    ending the process at once (billiard's handler, set after Celery's pool initialiser,
    exits at once, killing the epoch); the previous handler is back afterwards."""
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def forward_sigterm(pids: Iterable[int]) -> None:
    """In the Celery main, as its warm shutdown starts: tell the pool processes."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:  # already gone
            continue
