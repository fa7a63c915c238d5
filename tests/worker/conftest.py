"""A real stack for worker tests: the API (TestClient), a real `celery worker` process, real services."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.cli.serve_cmd import worker_command
from app.main import create_app
from core.config import Settings
from core.migrate import upgrade
from tests.conftest import require_redis, service_missing

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A private redis-server, so a test can stop and restart it."""

    def __init__(self, folder: Path) -> None:
        if shutil.which("redis-server") is None:
            service_missing("redis-server", "not installed")
        self.port = free_port()
        self.folder = folder
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.folder),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@dataclass
class Stack:
    settings: Settings
    env: dict[str, str]
    client: TestClient
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    log: Path = Path("/dev/null")

    def start_worker(self) -> subprocess.Popen[bytes]:
        command = [*worker_command(concurrency=1), "--hostname", f"test{len(self.workers)}@%h"]
        with self.log.open("ab") as out:
            process = subprocess.Popen(
                command,
                env=self.env,
                cwd=REPO,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.workers.append(process)
        return process

    def kill_worker(self, process: subprocess.Popen[bytes]) -> None:
        """kill -9 the worker and all its pool processes (as losing the machine would)."""
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def stop_all(self) -> None:
        for process in self.workers:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()

    def wait_job(
        self, job_id: str, until: Callable[[dict[str, Any]], bool], timeout: float = 240
    ) -> dict[str, Any]:
        deadline = time.time() + timeout
        body: dict[str, Any] = {}
        while time.time() < deadline:
            body = self.client.get(f"/v1/jobs/{job_id}").json()
            if until(body):
                return body
            time.sleep(0.3)
        raise AssertionError(
            f"timed out waiting on job {job_id}: {body}\n--- worker log ---\n"
            f"{self.log.read_text()[-4000:]}"
        )


def make_stack(tmp_path: Path, database_url: str, broker_url: str | None) -> Iterator[Stack]:
    data_dir = tmp_path / "data"
    env = {
        **os.environ,
        "CRACKSCAN_DATA_DIR": str(data_dir),
        "CRACKSCAN_DATABASE_URL": database_url,
        "CRACKSCAN_JOB_LEASE_S": "4",
        "CRACKSCAN_AUTH_DISABLED": "true",
    }
    env.pop("CRACKSCAN_BROKER_URL", None)
    if broker_url:
        env["CRACKSCAN_BROKER_URL"] = broker_url
    settings = Settings(
        data_dir=data_dir,
        database_url=database_url,
        broker_url=broker_url,
        job_lease_s=4,
        auth_disabled=True,
    )
    upgrade(database_url)
    with TestClient(create_app(settings)) as client:
        stack = Stack(settings, env, client, log=tmp_path / "worker.log")
        try:
            yield stack
        finally:
            stack.stop_all()


@pytest.fixture(params=[pytest.param("redis+postgresql", marks=pytest.mark.services), "embedded"])
def stack(request, tmp_path) -> Iterator[Stack]:  # type: ignore[no-untyped-def]
    """Redis and PostgreSQL as in production, and the embedded default (filesystem queue + SQLite)."""
    if request.param == "embedded":
        yield from make_stack(tmp_path, f"sqlite:///{tmp_path / 'crackscan.db'}", None)
        return
    redis_url = require_redis().rsplit("/", 1)[0] + "/15"
    import redis

    redis.Redis.from_url(redis_url).flushdb()
    yield from make_stack(tmp_path, request.getfixturevalue("postgres_url"), redis_url)
