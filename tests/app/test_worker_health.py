"""What the API knows of training workers (#27 item 5): the live ones by their presence
rows, and a cancel of a job no live worker holds."""

from __future__ import annotations

from datetime import timedelta

from core.db import transaction
from core.presence import announce
from core.tables import TrainingJob, WorkerPresence, utcnow
from tests.app.conftest import import_and_activate


def running_job(settings, heartbeat_ago_s: float) -> str:  # type: ignore[no-untyped-def]
    with transaction(settings.db_url) as session:
        job = TrainingJob(
            config={"epochs": 1},
            status="running",
            lease_owner="host:1:dead",
            heartbeat_at=utcnow() - timedelta(seconds=heartbeat_ago_s),
        )
        session.add(job)
        session.flush()
        return str(job.id)


def test_cancel_ends_at_once_a_job_whose_worker_died(api):
    lease = api.settings.job_lease_s
    dead = running_job(api.settings, lease + 5)
    reply = api.client.post(f"/v1/jobs/{dead}/cancel", headers=api.headers("train"))
    assert reply.status_code == 200, reply.text
    assert reply.json()["status"] == "cancelled" and reply.json()["finished_at"]
    with transaction(api.settings.db_url) as session:
        assert session.get(TrainingJob, dead).lease_owner is None

    live = running_job(api.settings, 1)  # its worker stops it at its next step
    reply = api.client.post(f"/v1/jobs/{live}/cancel", headers=api.headers("train"))
    assert reply.status_code == 200 and reply.json()["status"] == "running", reply.text
    with transaction(api.settings.db_url) as session:
        row = session.get(TrainingJob, live)
        assert row.cancel_requested and row.lease_owner == "host:1:dead"


def test_readyz_counts_the_workers_seen_within_the_ttl(api, tmp_path):
    import_and_activate(api, tmp_path)
    ttl = api.settings.worker_presence_ttl_s
    assert api.client.get("/readyz").json()["training_workers"] == 0  # reported, not a 503
    with transaction(api.settings.db_url) as session:
        announce(session, "a" * 32, "celery@a", 10, ttl)
        announce(session, "b" * 32, "celery@b", 11, ttl)
        session.flush()
        session.get(WorkerPresence, "b" * 32).seen_at = utcnow() - timedelta(seconds=ttl + 1)
    ready = api.client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["training_workers"] == 1, ready.text
    metrics = api.client.get("/metrics").text
    assert "crackscan_training_workers_alive 1.0" in metrics
    with transaction(api.settings.db_url) as session:  # long dead rows are deleted
        session.get(WorkerPresence, "b" * 32).seen_at = utcnow() - timedelta(seconds=ttl * 21)
        announce(session, "a" * 32, "celery@a", 10, ttl)
    with transaction(api.settings.db_url) as session:
        assert session.get(WorkerPresence, "b" * 32) is None
