"""The broker down: submissions get 503 and store nothing; the reaper never strands a job."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
import redis as redis_client

from core.db import transaction
from core.queue import TRAINING_QUEUE, make_celery
from core.tables import TrainingJob, utcnow
from tests.worker.conftest import RedisServer, make_stack
from tests.worker.test_training_jobs import submit, upload
from worker.reaper import Reaper

pytestmark = [pytest.mark.services, pytest.mark.slow]


@pytest.fixture
def broker(tmp_path) -> Iterator[RedisServer]:  # type: ignore[no-untyped-def]
    """A private Redis, started, that a test may stop and start again."""
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def queued_messages(url: str) -> int:
    return int(redis_client.Redis.from_url(url).llen(TRAINING_QUEUE))


def test_submission_with_the_broker_down_is_503_and_nothing_is_stored(
    tmp_path, tiny_set, postgres_url, broker
):
    for stack in make_stack(tmp_path, postgres_url, broker.url):
        dataset_id = upload(stack, tiny_set)
        broker.stop()
        body = {"dataset_id": dataset_id, "backbone": "resnet18", "epochs": 1}
        body |= {"image_size": 32, "batch_size": 8}
        reply = stack.client.post("/v1/jobs", json=body)
        assert reply.status_code == 503, reply.text
        assert int(reply.headers["Retry-After"]) > 0
        assert "broker" in reply.json()["error"]["message"]
        assert stack.client.get("/v1/jobs").json()["total"] == 0  # nothing half-stored
        broker.start()
        job_id = submit(stack, dataset_id, epochs=1)  # the broker is back: accepted
        job = stack.client.get(f"/v1/jobs/{job_id}").json()
        assert job["status"] == "queued"
        assert enqueued_at(stack.settings, job_id) is not None
        assert queued_messages(broker.url) == 1


def add_queued_job(settings, dataset_id: str, enqueued_ago_s: float | None) -> str:  # type: ignore[no-untyped-def]
    with transaction(settings.db_url) as session:
        job = TrainingJob(
            dataset_id=dataset_id,
            dataset_ids=[dataset_id],
            config={"epochs": 1},
            status="queued",
            enqueued_at=None
            if enqueued_ago_s is None
            else utcnow() - timedelta(seconds=enqueued_ago_s),
        )
        session.add(job)
        session.flush()
        return str(job.id)


def enqueued_at(settings, job_id: str):  # type: ignore[no-untyped-def]
    with transaction(settings.db_url) as session:
        return session.get(TrainingJob, job_id).enqueued_at


def test_reaper_sends_again_what_a_down_broker_refused_and_what_it_lost(
    tmp_path, tiny_set, postgres_url, broker
):
    for stack in make_stack(tmp_path, postgres_url, broker.url):
        settings = stack.settings.model_copy(update={"job_requeue_s": 600.0})
        dataset_id = upload(stack, tiny_set)
        never_sent = add_queued_job(settings, dataset_id, None)
        lost = add_queued_job(settings, dataset_id, 3600)  # sent an hour ago, still queued
        recent = add_queued_job(settings, dataset_id, 5)  # sent just now: left alone
        reaper = Reaper(settings, make_celery(settings, "reaper-test"))

        broker.stop()
        assert reaper.sweep() == []
        assert enqueued_at(settings, never_sent) is None  # not marked while unsent
        assert enqueued_at(settings, lost) < utcnow() - timedelta(seconds=3000)

        broker.start()
        assert sorted(reaper.sweep()) == sorted([never_sent, lost])
        assert queued_messages(broker.url) == 2
        for job_id in (never_sent, lost):
            assert enqueued_at(settings, job_id) > utcnow() - timedelta(seconds=60)
        assert reaper.sweep() == []  # sent once, not on every sweep
        assert enqueued_at(settings, recent) < utcnow() - timedelta(seconds=4)
