"""The Celery worker that `crackscan serve` runs beside the API: started, watched, restarted.

A thread owns the worker process. It waits on it, and when it ends while serve is not
stopping (killed, crashed), it kills what is left of its process group (a pool process
orphaned by a killed main would train on unsupervised), reaps it and starts a new one,
sooner or later depending on how long the last one lived. The job the dead worker held
stops renewing its lease; once the lease is stale, the new worker's reaper sends it again
and it resumes from its last epoch.

Stopping is a warm shutdown: SIGTERM to the Celery main only. It tells its pool
process, whose job finishes the epoch under way or stops at a step and hands itself
back (worker/stopping.py); after the grace the whole group is killed.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable

RESTART_DELAYS_S = (1.0, 2.0, 5.0, 10.0, 30.0)  # after deaths in a row
HEALTHY_AFTER_S = 60.0  # a worker that lived this long resets the delay


def _die_with_parent() -> None:
    """In the worker, before exec: SIGTERM when the thread that started it ends, or serve
    dies (even by kill -9), so a worker never outlives the server that started it (Linux;
    elsewhere a no-op). The supervising thread lives until the worker is reaped."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def start_worker(command: list[str]) -> subprocess.Popen[bytes]:
    """The worker in its own process group, so that stopping it can end its pool too."""
    return subprocess.Popen(command, start_new_session=True, preexec_fn=_die_with_parent)


def kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the worker's whole process group (its pool processes too) and reap it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def stop_worker(process: subprocess.Popen[bytes], grace_s: float = 30.0) -> None:
    """Warm shutdown: SIGTERM to the Celery main, which tells its pool; a running epoch
    may finish within the grace less the hand-back margin; then the group is killed."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            print(f"the worker did not stop within {grace_s:.0f} s: killing it", file=sys.stderr)
    kill_group(process)


class EmbeddedWorker:
    """Runs `command` as a worker until stop(); restarts it when it dies."""

    def __init__(
        self,
        command: list[str],
        grace_s: float,
        where: str = "",
        say: Callable[[str], None] | None = None,
    ) -> None:
        self.command = command
        self.where = where
        self.grace_s = grace_s
        self.say = say or (lambda line: print(line, file=sys.stderr, flush=True))
        self.restarts = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._started = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="embedded-worker", daemon=True)

    @property
    def pid(self) -> int | None:
        process = self._process
        return process.pid if process is not None else None

    def alive(self) -> bool:
        process = self._process
        return process is not None and process.poll() is None

    def state(self) -> str:
        """running, restarting (it died and is being replaced) or stopped."""
        if self._stopping.is_set():
            return "stopped"
        return "running" if self.alive() else "restarting"

    def start(self, timeout_s: float = 30.0) -> int:
        """Start the supervising thread; returns the first worker's pid."""
        self._thread.start()
        if not self._started.wait(timeout_s) or self.pid is None:
            raise RuntimeError("the embedded worker could not be started")
        return self.pid

    def stop(self) -> None:
        """Warm shutdown of the worker; no restart after it."""
        self._stopping.set()
        with self._lock:
            process = self._process
        if process is not None:
            stop_worker(process, self.grace_s)
        self._thread.join(timeout=10)

    def _spawn(self) -> subprocess.Popen[bytes] | None:
        with self._lock:
            if self._stopping.is_set():
                return None
            self._process = start_worker(self.command)
        self.say(f"started an embedded Celery worker (pid {self._process.pid}){self.where}")
        return self._process

    def _run(self) -> None:
        deaths = 0
        while True:
            try:
                process = self._spawn()
            except OSError as exc:
                process = None
                self.say(f"could not start the embedded worker: {exc}")
            self._started.set()
            if process is None and self._stopping.is_set():
                return
            born = time.monotonic()
            code = process.wait() if process is not None else -1
            if self._stopping.is_set():
                return  # stop() kills the group and reaps it
            if process is not None:
                kill_group(process)  # a pool process the dead main left behind
            deaths = 0 if time.monotonic() - born >= HEALTHY_AFTER_S else deaths + 1
            delay = RESTART_DELAYS_S[min(deaths, len(RESTART_DELAYS_S)) - 1] if deaths else 0.0
            self.say(
                f"the embedded worker (pid {process.pid if process else '-'}) ended with "
                f"{_describe(code)}: starting another in {delay:.0f} s"
            )
            if self._stopping.wait(delay):
                return
            self.restarts += 1


def _describe(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-code).name}"
    return f"exit code {code}"
