"""`crackscan serve` and its embedded worker across restarts and a killed worker (#27 items
4 and 5), with real processes: serve, its Celery worker, a SQLite file and the
filesystem queue, as a single-machine install runs them.

Before: kill -9 of the embedded worker left a zombie that was never replaced, its job
stayed `running` even after a cancel, and /readyz stayed green; each SIGTERM restart of
serve killed the running epoch and counted as a failed start, so a job was failed after
three restarts.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.app.conftest import zip_folder
from tests.app.test_faults import Serve, activate_model, serve_env
from tests.app.test_serve_signals import _stat, alive, worker_tree

pytestmark = pytest.mark.slow
ENDED = ("succeeded", "failed", "cancelled")


def restart_env(tmp_path: Path) -> dict[str, str]:
    env = serve_env(tmp_path)
    env.update(
        {
            "CRACKSCAN_EMBEDDED_WORKER": "true",
            "CRACKSCAN_JOB_LEASE_S": "4",  # a dead worker's job is stale within seconds
            "CRACKSCAN_WORKER_PRESENCE_TTL_S": "3",
            "CRACKSCAN_WORKER_STOP_GRACE_S": "20",  # an epoch may go on for 10 s
        }
    )
    env.pop("CRACKSCAN_JOB_MAX_ATTEMPTS", None)  # the default, 3
    return env


def worker_pids(serve: Serve) -> list[int]:
    """Every worker this serve started, in order (it logs each start)."""
    text = serve.log.read_text(errors="replace")
    return [int(p) for p in re.findall(r"started an embedded Celery worker \(pid (\d+)\)", text)]


def wait_until(check: Callable[[], Any], limit: float, what: str, serve: Serve) -> Any:
    deadline = time.time() + limit
    while time.time() < deadline:
        try:
            found = check()
        except httpx.HTTPError:
            found = None
        if found:
            return found
        time.sleep(0.3)
    raise AssertionError(f"{what}: not within {limit:.0f} s\n{serve.tail()}")


def upload(client: httpx.Client, folder: Path) -> str:
    files = {"file": ("tiles.zip", zip_folder(folder), "application/zip")}
    reply = client.post("/v1/datasets", files=files)
    assert reply.status_code == 201, reply.text
    return str(reply.json()["id"])


def submit(client: httpx.Client, dataset_id: str, epochs: int, image_size: int) -> str:
    body = {
        "dataset_id": dataset_id,
        "backbone": "resnet18",
        "loss": "igmsda",
        "epochs": epochs,
        "image_size": image_size,
        "batch_size": 8,
        "lr": 0.003,
        "lr_milestones": [],
    }
    reply = client.post("/v1/jobs", json=body)
    assert reply.status_code == 202, reply.text
    return str(reply.json()["id"])


def job(client: httpx.Client, job_id: str) -> dict[str, Any]:
    reply = client.get(f"/v1/jobs/{job_id}")
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


def epochs_of(client: httpx.Client, job_id: str) -> list[int]:
    return [e["epoch"] for e in job(client, job_id)["epochs"]]


def ready(serve: Serve) -> dict[str, Any] | None:
    reply = serve.client.get("/readyz")
    return dict(reply.json()) if reply.status_code == 200 else None


def not_ready(serve: Serve, words: str) -> dict[str, Any] | None:
    reply = serve.client.get("/readyz")
    return dict(reply.json()) if reply.status_code == 503 and words in reply.text else None


def test_a_killed_embedded_worker_is_replaced_and_its_job_can_be_cancelled(tmp_path, tiny_set):
    serve = Serve(tmp_path, restart_env(tmp_path), "serve")
    try:
        activate_model(serve.client, tmp_path)
        body = wait_until(lambda: ready(serve), 60, "ready with its worker", serve)
        assert body["training_workers"] == 1
        health = serve.client.get("/healthz").json()["embedded_worker"]
        assert health["state"] == "running" and health["restarts"] == 0
        dataset_id = upload(serve.client, tiny_set)
        job_id = submit(serve.client, dataset_id, epochs=60, image_size=32)
        wait_until(lambda: epochs_of(serve.client, job_id), 90, "a first epoch", serve)
        [first] = worker_pids(serve)
        tree = worker_tree(first)
        assert len(alive(tree)) == 2, "the worker and its pool process"

        os.kill(first, signal.SIGKILL)
        gone = wait_until(
            lambda: not_ready(serve, "no training worker alive"), 15, "/readyz says so", serve
        )
        assert "embedded worker" in gone["error"]["message"], gone
        cancel = serve.client.post(f"/v1/jobs/{job_id}/cancel")
        assert cancel.status_code == 200, cancel.text
        wait_until(lambda: _stat(first) is None, 15, "the dead worker reaped", serve)
        wait_until(lambda: alive(tree) == [], 15, "its orphaned pool process ended", serve)
        wait_until(lambda: len(worker_pids(serve)) == 2, 30, "a new worker started", serve)
        body = wait_until(lambda: ready(serve), 60, "ready again", serve)
        assert body["training_workers"] == 1
        health = serve.client.get("/healthz").json()["embedded_worker"]
        assert health == {"state": "running", "pid": worker_pids(serve)[-1], "restarts": 1}

        ended = wait_until(
            lambda: (j := job(serve.client, job_id))["status"] in ENDED and j,
            60,
            "the cancelled job ended",
            serve,
        )
        assert ended["status"] == "cancelled", ended
        assert serve.client.delete(f"/v1/datasets/{dataset_id}").status_code == 204

        again = submit(serve.client, upload(serve.client, tiny_set), epochs=1, image_size=32)
        done = wait_until(
            lambda: (j := job(serve.client, again))["status"] in ENDED and j,
            120,
            "a new job on the new worker",
            serve,
        )
        assert done["status"] == "succeeded", done
        metrics = serve.client.get("/metrics").text
        assert "crackscan_training_workers_alive 1.0" in metrics
    finally:
        serve.stop()


def test_a_job_survives_two_serve_restarts_and_a_killed_worker(tmp_path, tiny_set):
    """The CI restart test: a 6-epoch job, SIGTERM to serve twice and kill -9 of its
    worker once, ends succeeded with every epoch stored once; the clean stops are not
    counted as starts (the default CRACKSCAN_JOB_MAX_ATTEMPTS is 3: before, the fourth
    start was refused)."""
    env = restart_env(tmp_path)
    serve = Serve(tmp_path, env, "serve-1")
    try:
        job_id = submit(serve.client, upload(serve.client, tiny_set), epochs=6, image_size=64)

        def stored_more_than(count: int) -> list[int] | None:
            done = epochs_of(serve.client, job_id)
            return done if len(done) > count else None

        # 1: SIGTERM while an epoch runs: it is stored, the job is queued, nothing counted
        wait_until(lambda: stored_more_than(0), 120, "epoch 1", serve)
        time.sleep(1.0)  # well into the next epoch: past the check that follows a stored one
        at_stop = len(epochs_of(serve.client, job_id))
        stop_within_grace(serve)
        stopped = epochs_of_db(tmp_path, job_id)
        assert stopped["status"] == "queued" and stopped["attempts"] == 0, stopped
        assert stopped["epochs"] == list(range(1, stopped["epoch"] + 1))
        assert stopped["epoch"] > at_stop, "the epoch under way was finished and stored"

        # 2: kill -9 of the worker mid-epoch: a start that died, counted
        serve = Serve(tmp_path, env, "serve-2")
        done = stopped["epoch"]
        wait_until(lambda: stored_more_than(done), 120, "an epoch after the restart", serve)
        assert job(serve.client, job_id)["status"] == "running"
        os.kill(worker_pids(serve)[-1], signal.SIGKILL)
        wait_until(lambda: len(worker_pids(serve)) == 2, 30, "a new worker", serve)

        # 3: SIGTERM once it resumed and stored another epoch
        done = len(epochs_of(serve.client, job_id))
        wait_until(lambda: stored_more_than(done), 120, "an epoch after the kill", serve)
        assert job(serve.client, job_id)["status"] == "running"
        stop_within_grace(serve)

        serve = Serve(tmp_path, env, "serve-3")
        ended = wait_until(
            lambda: (j := job(serve.client, job_id))["status"] in ENDED and j,
            120,
            "the job ended",
            serve,
        )
        assert ended["status"] == "succeeded", ended
        assert [e["epoch"] for e in ended["epochs"]] == [1, 2, 3, 4, 5, 6]
        assert ended["attempts"] == 2, "one start died (the kill), two stopped cleanly"
        model = serve.client.get(f"/v1/models/{ended['result_model_id']}").json()
        assert model["metrics"]["epochs_run"] == 6  # the resumed history: each epoch once
    finally:
        serve.stop()


def stop_within_grace(serve: Serve) -> None:
    """SIGTERM: serve ends as a signalled process does, its worker well within the grace
    (no kill after it)."""
    started = time.monotonic()
    serve.stop()
    took = time.monotonic() - started
    assert serve.process.returncode == 128 + signal.SIGTERM, serve.tail()
    assert "did not stop within" not in serve.tail() and took < 20, f"{took:.1f} s"


def epochs_of_db(tmp_path: Path, job_id: str) -> dict[str, Any]:
    """The job row and its stored epochs, read from the SQLite file while serve is down."""
    import sqlite3

    with sqlite3.connect(tmp_path / "data" / "crackscan.db") as db:
        status, attempts, epoch = db.execute(
            "SELECT status, attempts, epoch FROM training_jobs WHERE id = ?", (job_id,)
        ).fetchone()
        epochs = [
            e
            for (e,) in db.execute(
                "SELECT epoch FROM epoch_metrics WHERE job_id = ? ORDER BY epoch", (job_id,)
            )
        ]
    return {"status": status, "attempts": attempts, "epoch": epoch, "epochs": epochs}
