"""Training jobs through HTTP and a real Celery worker: success, cancel, kill -9, broker restart."""

from __future__ import annotations

import time

import numpy as np
import pytest
from sqlalchemy import select

from core.db import transaction
from core.tables import Blob, Dataset, EpochMetric, NetworkModel, TrainingJob
from tests.app.conftest import photo_bytes, zip_folder
from tests.conftest import PostgresServer, require_redis
from tests.worker.conftest import RedisServer, make_stack

pytestmark = pytest.mark.slow

ENDED = ("succeeded", "failed", "cancelled")


def upload(stack, folder) -> str:  # type: ignore[no-untyped-def]
    reply = stack.client.post(
        "/v1/datasets", files={"file": ("tiles.zip", zip_folder(folder), "application/zip")}
    )
    assert reply.status_code == 201, reply.text
    return str(reply.json()["id"])


def submit(stack, dataset_id: str, epochs: int, **extra) -> str:  # type: ignore[no-untyped-def]
    body = {
        "dataset_id": dataset_id,
        "backbone": "resnet18",
        "loss": "igmsda",
        "epochs": epochs,
        "image_size": 32,
        "batch_size": 8,
        "lr": 0.003,
        "lr_milestones": [],
    } | extra
    reply = stack.client.post("/v1/jobs", json=body)
    assert reply.status_code == 202, reply.text
    return str(reply.json()["id"])


def epochs_stored(stack, job_id: str) -> list[int]:  # type: ignore[no-untyped-def]
    with transaction(stack.settings.db_url) as session:
        return list(
            session.scalars(
                select(EpochMetric.epoch)
                .where(EpochMetric.job_id == job_id)
                .order_by(EpochMetric.epoch)
            )
        )


def test_job_succeeds_and_its_model_serves_inspections(stack, tiny_set):
    stack.start_worker()
    dataset_id = upload(stack, tiny_set)
    job_id = submit(stack, dataset_id, epochs=2)
    job = stack.wait_job(job_id, lambda j: j["status"] in ENDED)
    assert job["status"] == "succeeded", job
    assert job["progress"] == 100 and [e["epoch"] for e in job["epochs"]] == [1, 2]
    assert all(0 <= e["val_macro_f1"] <= 1 for e in job["epochs"])
    with transaction(stack.settings.db_url) as session:  # #13 item 13: no bloat
        row = session.get(TrainingJob, job_id)
        assert row.last_checkpoint_blob_id is None  # published: the resumable copy is gone
        kept = set(session.scalars(select(Blob.id)))
        expected = {session.get(Dataset, dataset_id).blob_id}
        expected.add(session.get(NetworkModel, job["result_model_id"]).blob_id)
        assert kept == expected, kept - expected
    model_id = job["result_model_id"]
    model = stack.client.get(f"/v1/models/{model_id}").json()
    assert model["source_job_id"] == job_id and not model["is_active"]
    assert model["config"]["loss"] == "igmsda" and model["metrics"]["test"]["macro_f1"] >= 0
    assert stack.client.post(f"/v1/models/{model_id}/activate").status_code == 200
    reply = stack.client.post(
        "/v1/inspections", files={"image": ("wall.jpg", photo_bytes(), "image/jpeg")}
    )
    assert reply.status_code == 201, reply.text
    assert reply.json()["model_id"] == model_id
    assert reply.json()["crackmap"]["model"]["content_hash"] == model["content_hash"]

    # Fine-tuning from it: a new version, activated automatically only when it beats the active one.
    tune_id = submit(stack, dataset_id, epochs=1, base_model_id=model_id, auto_activate=True)
    tuned = stack.wait_job(tune_id, lambda j: j["status"] in ENDED)
    assert tuned["status"] == "succeeded", tuned
    new = stack.client.get(f"/v1/models/{tuned['result_model_id']}").json()
    assert new["parent_model_id"] == model_id and new["id"] != model_id
    better = new["metrics"]["val"]["macro_f1"] > model["metrics"]["val"]["macro_f1"]
    assert new["is_active"] == better


def test_cancel_keeps_the_last_checkpoint(stack, tiny_set):
    stack.start_worker()
    job_id = submit(stack, upload(stack, tiny_set), epochs=60)
    running = stack.wait_job(job_id, lambda j: j["epoch"] >= 1)
    assert running["status"] == "running" and running["progress"] > 0 and running["heartbeat_at"]
    assert stack.client.post(f"/v1/jobs/{job_id}/cancel").status_code == 200
    job = stack.wait_job(job_id, lambda j: j["status"] in ENDED)
    assert job["status"] == "cancelled" and job["result_model_id"] is None
    assert 1 <= len(job["epochs"]) < 60
    with transaction(stack.settings.db_url) as session:
        assert session.get(TrainingJob, job_id).last_checkpoint_blob_id is not None


def test_killed_worker_job_resumes_on_a_new_worker(stack, tiny_set):
    first = stack.start_worker()
    job_id = submit(stack, upload(stack, tiny_set), epochs=6)
    stack.wait_job(job_id, lambda j: j["epoch"] >= 2)
    stack.kill_worker(first)
    assert stack.client.get(f"/v1/jobs/{job_id}").json()["status"] == "running"
    stack.start_worker()
    job = stack.wait_job(job_id, lambda j: j["status"] in ENDED)
    assert job["status"] == "succeeded", job
    assert epochs_stored(stack, job_id) == [1, 2, 3, 4, 5, 6]
    assert job["attempts"] == 2


@pytest.mark.services
def test_redis_restart_mid_job_ends_in_a_correct_state(tmp_path, tiny_set, postgres_url):
    redis = RedisServer(tmp_path)
    redis.start()
    try:
        for stack in make_stack(tmp_path, postgres_url, redis.url):
            stack.start_worker()
            job_id = submit(stack, upload(stack, tiny_set), epochs=5)
            stack.wait_job(job_id, lambda j: j["epoch"] >= 1)
            redis.stop()
            redis.start()
            job = stack.wait_job(job_id, lambda j: j["status"] in ENDED)
            assert job["status"] == "succeeded", job
            assert epochs_stored(stack, job_id) == [1, 2, 3, 4, 5]
            second = submit(stack, job["dataset_id"], epochs=1)  # the broker works again
            assert stack.wait_job(second, lambda j: j["status"] in ENDED)["status"] == "succeeded"
    finally:
        redis.stop()


def test_attempts_are_capped(stack, tiny_set):
    job_id = submit(stack, upload(stack, tiny_set), epochs=1)
    with transaction(stack.settings.db_url) as session:
        session.get(TrainingJob, job_id).attempts = stack.settings.job_max_attempts
    stack.start_worker()
    job = stack.wait_job(job_id, lambda j: j["status"] in ENDED)
    assert job["status"] == "failed" and "gave up" in job["error"]
    assert np.isfinite(job["progress"])


def test_job_trains_on_a_tile_set_and_a_masks_set_together(stack, tiny_set, tmp_path):
    from tests.models.test_masks import TILE, _naming_set

    stack.start_worker()
    tiles_id = upload(stack, tiny_set)
    masks_zip = zip_folder(_naming_set(tmp_path / "masks"))
    reply = stack.client.post(
        "/v1/datasets",
        files={"file": ("masks.zip", masks_zip, "application/zip")},
        data={"mask_tile": str(TILE)},
    )
    assert reply.status_code == 201, reply.text
    masks = reply.json()
    assert masks["layout"] == "masks" and masks["tile_px"] == TILE
    assert set(masks["details"]["tiles"]) == {"crack", "no_crack", "left_out"}
    body = {
        "dataset_ids": [tiles_id, masks["id"]],
        "backbone": "resnet18",
        "epochs": 1,
        "image_size": 32,
        "batch_size": 8,
        "lr": 0.003,
        "lr_milestones": [],
        "target_precision": 0.6,
    }
    reply = stack.client.post("/v1/jobs", json=body)
    assert reply.status_code == 202, reply.text
    job_id = reply.json()["id"]
    assert reply.json()["dataset_ids"] == [tiles_id, masks["id"]]
    busy = stack.client.delete(f"/v1/datasets/{masks['id']}")
    assert busy.status_code == 409 and job_id in busy.json()["error"]["message"]
    job = stack.wait_job(job_id, lambda j: j["status"] in ENDED)
    assert job["status"] == "succeeded", job
    model = stack.client.get(f"/v1/models/{job['result_model_id']}").json()
    assert model["tile_px"] == TILE and 0 < model["operating_threshold"] < 1
    assert model["metrics"]["operating_point"]["target_precision"] == 0.6
    assert [s["layout"] for s in model["metrics"]["data"]["sets"]] == ["folders", "masks"]
    assert model["config"]["augment"] == "survey"
    # The sets can go once the job is over; the job list still answers (was a 500).
    for dataset_id in (tiles_id, masks["id"]):
        assert stack.client.delete(f"/v1/datasets/{dataset_id}").status_code == 204
    listed = stack.client.get("/v1/jobs")
    assert listed.status_code == 200, listed.text
    assert listed.json()["items"][0]["dataset_id"] is None


@pytest.mark.services
def test_postgres_restart_mid_job_ends_in_a_correct_state(tmp_path, tiny_set):
    """PostgreSQL restarted under a running job, with no restart of the API or the worker:
    503 with Retry-After while it is down, then the job resumes and ends succeeded with
    every epoch stored once."""
    redis_url = require_redis().rsplit("/", 1)[0] + "/14"
    import redis

    redis.Redis.from_url(redis_url).flushdb()
    pg = PostgresServer()
    pg.start()
    try:
        for stack in make_stack(tmp_path, pg.url, redis_url):
            stack.start_worker()
            dataset_id = upload(stack, tiny_set)
            job_id = submit(stack, dataset_id, epochs=5)
            stack.wait_job(job_id, lambda j: j.get("epoch", 0) >= 1)
            pg.stop()
            down = stack.client.get(f"/v1/jobs/{job_id}")
            assert down.status_code == 503, down.text
            assert int(down.headers["Retry-After"]) > 0
            body = {"dataset_id": dataset_id, "backbone": "resnet18", "epochs": 1}
            refused = stack.client.post("/v1/jobs", json=body | {"image_size": 32, "batch_size": 8})
            assert refused.status_code == 503, refused.text
            time.sleep(6)  # past the job lease (4 s): the heartbeat could not be written
            pg.start()
            job = stack.wait_job(job_id, lambda j: j.get("status") in ENDED)
            assert job["status"] == "succeeded", job
            assert epochs_stored(stack, job_id) == [1, 2, 3, 4, 5]
    finally:
        pg.close()
