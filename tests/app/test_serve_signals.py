"""Stopping `crackscan serve` stops its embedded Celery worker too (#13 item 2).

systemd and container runtimes send SIGTERM; a terminal sends SIGINT. Either way, no
worker may be left running, re-parented to PID 1, taking jobs.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.worker.conftest import free_port

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a process, or None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return fields[0], int(fields[1])


def worker_tree(pid: int) -> list[int]:
    """The worker and its pool processes."""
    children = [
        int(e.name)
        for e in Path("/proc").iterdir()
        if e.name.isdigit() and (_stat(int(e.name)) or ("", 0))[1] == pid
    ]
    return [pid, *children]


def alive(pids: list[int]) -> list[int]:
    return [p for p in pids if (_stat(p) or ("Z", 0))[0] != "Z"]


def start_serve(tmp_path: Path) -> tuple[subprocess.Popen[bytes], int, Path]:
    port = free_port()
    env = {
        **os.environ,
        "CRACKSCAN_DATA_DIR": str(tmp_path / "data"),
        "CRACKSCAN_AUTH_DISABLED": "true",
        "CRACKSCAN_WORKER_STOP_GRACE_S": "20",
    }
    for name in ("CRACKSCAN_BROKER_URL", "CRACKSCAN_DATABASE_URL"):
        env.pop(name, None)
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        serve = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--migrate", "--port", str(port)],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.time() + 60
    worker_pid = None
    while time.time() < deadline:
        text = log.read_text(errors="replace")
        found = re.search(r"embedded Celery worker \(pid (\d+)\)", text)
        if found and "celery@" in text and "ready" in text:
            worker_pid = int(found.group(1))
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).read()
                return serve, worker_pid, log
            except OSError:
                pass
        if serve.poll() is not None:
            break
        time.sleep(0.3)
    serve.kill()
    raise AssertionError(f"serve did not come up:\n{log.read_text()[-3000:]}")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stopping_serve_stops_its_worker(tmp_path, sig):
    serve, worker_pid, log = start_serve(tmp_path)
    tree = worker_tree(worker_pid)
    try:
        assert len(alive(tree)) >= 2, "the worker and its pool process run"
        serve.send_signal(sig)
        serve.wait(timeout=60)
        deadline = time.time() + 10
        while alive(tree) and time.time() < deadline:
            time.sleep(0.2)
        left = alive(tree)
        assert left == [], f"worker processes left running: {left}\n{log.read_text()[-3000:]}"
    finally:
        if serve.poll() is None:
            serve.kill()
        for pid in alive(tree):
            os.kill(pid, signal.SIGKILL)


def test_a_killed_serve_takes_its_worker_with_it(tmp_path):
    """Even kill -9, which runs no handler: the worker gets SIGTERM from the kernel."""
    serve, worker_pid, log = start_serve(tmp_path)
    tree = worker_tree(worker_pid)
    try:
        serve.kill()
        serve.wait(timeout=10)
        deadline = time.time() + 30
        while alive(tree) and time.time() < deadline:
            time.sleep(0.2)
        assert alive(tree) == [], log.read_text()[-3000:]
    finally:
        for pid in alive(tree):
            os.kill(pid, signal.SIGKILL)
