"""Faults with real processes (#13): kill -9 of the API during an inspection, and
PostgreSQL restarted under a running inspection, with no restart of crackscan.

Each test runs `crackscan serve` as its own process, as a user would, on a short
inspection lease so that a takeover happens within seconds.
"""

from __future__ import annotations

import io
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.app.conftest import checkpoint_bytes
from tests.conftest import PostgresServer
from tests.worker.conftest import free_port

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
LEASE_S = 3.0
TILE, STRIDE = 32, 16
# 2400 x 2400 px: 149 x 149 = 22,201 tiles, long enough to be killed in the middle;
# 1200 x 1200 px: 74 x 74 = 5,476 tiles, done within the database's downtime
LONG, SHORT = 2400, 1200
DOWN_S = 20.0  # PostgreSQL's downtime in the restart test


class Serve:
    """`crackscan serve` in a subprocess, with its log, on a free port."""

    def __init__(self, tmp_path: Path, env: dict[str, str], name: str) -> None:
        self.port = free_port()
        self.log = tmp_path / f"{name}.log"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "app.cli", "serve", "--migrate", "--port", str(self.port)],
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=30)
        deadline = time.time() + 90
        while time.time() < deadline:
            if self.process.poll() is not None:
                break
            try:
                if self.client.get("/healthz").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.stop()
        raise AssertionError(f"serve did not come up:\n{self.tail()}")

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        self.client.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def serve_env(tmp_path: Path, database_url: str | None = None) -> dict[str, str]:
    env = {
        **os.environ,
        "CRACKSCAN_DATA_DIR": str(tmp_path / "data"),
        "CRACKSCAN_AUTH_DISABLED": "true",
        "CRACKSCAN_EMBEDDED_WORKER": "false",  # inspections only: no Celery worker needed
        "CRACKSCAN_INSPECTION_LEASE_S": str(LEASE_S),
        "CRACKSCAN_INSPECTION_WAIT_S": "0.2",
    }
    env.pop("CRACKSCAN_BROKER_URL", None)
    env.pop("CRACKSCAN_DATABASE_URL", None)
    if database_url:
        env["CRACKSCAN_DATABASE_URL"] = database_url
    return env


def photo(side: int) -> bytes:
    rng = np.random.default_rng(1)
    small = rng.integers(0, 255, (side // 8, side // 8, 3), dtype=np.uint8)
    image = Image.fromarray(small).resize((side, side), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=80)
    return buffer.getvalue()


def activate_model(client: httpx.Client, tmp_path: Path) -> None:
    files = {"file": ("constant.ckpt", checkpoint_bytes(tmp_path), "application/octet-stream")}
    reply = client.post("/v1/models", files=files)
    assert reply.status_code == 201, reply.text
    assert client.post(f"/v1/models/{reply.json()['id']}/activate").status_code == 200


def submit(client: httpx.Client, side: int) -> str:
    files = {"image": ("photo.jpg", photo(side), "image/jpeg")}
    reply = client.post("/v1/inspections", files=files, data={"tile": TILE, "stride": STRIDE})
    assert reply.status_code == 202, reply.text
    return str(reply.json()["id"])


def wait_for(client: httpx.Client, inspection_id: str, states: set[str], limit: float) -> Any:
    deadline = time.time() + limit
    body: Any = None
    while time.time() < deadline:
        try:
            reply = client.get(f"/v1/inspections/{inspection_id}")
            if reply.status_code == 200:
                body = reply.json()
                if body["status"] in states:
                    return body
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"inspection not {states} within {limit} s: {body}")


def assert_full_map(body: dict[str, Any], side: int) -> None:
    assert body["status"] == "succeeded", body
    grid = (side - TILE) // STRIDE + 1
    assert body["crackmap"]["summary"]["tiles"] == grid * grid, body["crackmap"]["summary"]


def test_kill_9_of_the_api_during_an_inspection_is_picked_up_again(tmp_path):
    env = serve_env(tmp_path)
    first = Serve(tmp_path, env, "first")
    try:
        activate_model(first.client, tmp_path)
        inspection_id = submit(first.client, LONG)
        wait_for(first.client, inspection_id, {"running"}, 60)
        first.process.kill()  # kill -9: no handler runs
        first.process.wait()
    finally:
        first.stop()
    with sqlite3.connect(tmp_path / "data" / "crackscan.db") as db:
        left = db.execute(
            "SELECT status, lease_owner FROM inspections WHERE id = ?", (inspection_id,)
        ).fetchone()
    assert left[0] == "running" and left[1], f"killed mid-inspection, the row holds {left}"
    second = Serve(tmp_path, env, "second")
    try:
        body = wait_for(second.client, inspection_id, {"succeeded", "failed"}, 240)
        assert_full_map(body, LONG)
    finally:
        second.stop()


@pytest.mark.services
def test_postgres_restart_during_an_inspection(tmp_path):
    """While PostgreSQL is down reads get 503 with Retry-After; once it is back, the same
    server (not restarted) finishes the inspection and keeps serving."""
    pg = PostgresServer()
    pg.start()
    serve = None
    try:
        serve = Serve(tmp_path, serve_env(tmp_path, pg.url), "serve")
        activate_model(serve.client, tmp_path)
        inspection_id = submit(serve.client, SHORT)
        wait_for(serve.client, inspection_id, {"running"}, 60)
        pg.stop()
        down = serve.client.get(f"/v1/inspections/{inspection_id}")
        assert down.status_code == 503, down.text
        assert int(down.headers["Retry-After"]) > 0
        assert serve.client.get("/readyz").status_code == 503
        files = {"image": ("b.jpg", photo(SHORT), "image/jpeg")}
        refused = serve.client.post("/v1/inspections", files=files)
        assert refused.status_code == 503 and "Retry-After" in refused.headers, refused.text
        time.sleep(DOWN_S)  # the map is finished while the database is away
        pg.start()
        body = wait_for(serve.client, inspection_id, {"succeeded", "failed"}, 90)
        assert_full_map(body, SHORT)
        assert serve.process.poll() is None, "the server kept running"
        assert serve.client.get("/readyz").status_code == 200
        again = submit(serve.client, SHORT)  # the runner thread is alive: new work is done
        assert_full_map(wait_for(serve.client, again, {"succeeded", "failed"}, 120), SHORT)
    finally:
        if serve is not None:
            serve.stop()
        pg.close()
