"""Task names and the Celery configuration shared by the API (sender) and the workers."""

from __future__ import annotations

from typing import Any

from celery import Celery

from core.config import Settings

TRAINING_RUN = "training.run"
TRAINING_REAP = "training.reap"
TRAINING_QUEUE = "training"


def broker_url(settings: Settings) -> str:
    return settings.broker_url or "filesystem://"


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery settings for long training jobs (see worker/ for why each is set)."""
    config: dict[str, Any] = {
        "broker_url": broker_url(settings),
        "task_ignore_result": True,
        "task_default_queue": TRAINING_QUEUE,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "worker_max_tasks_per_child": settings.worker_max_tasks_per_child,
        "task_soft_time_limit": settings.job_soft_time_limit_s,
        "task_time_limit": settings.job_soft_time_limit_s + 600,
        "broker_connection_retry_on_startup": True,
        "task_serializer": "json",
        "accept_content": ["json"],
    }
    if settings.embedded_broker:
        folder = settings.broker_folder
        for sub in ("queue", "processed", "control"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        config["broker_transport_options"] = {
            "data_folder_in": str(folder / "queue"),
            "data_folder_out": str(folder / "queue"),
            "processed_folder": str(folder / "processed"),
            "control_folder": str(folder / "control"),
            "store_processed": False,
        }
    else:
        # Redis redelivers an unacknowledged message after this; longer than any job.
        config["broker_transport_options"] = {
            "visibility_timeout": settings.job_soft_time_limit_s + 3600
        }
    return config


def send_training_run(app: Celery, job_id: str, max_retries: int) -> None:
    """Hand training.run for a job to the broker; raises when the broker cannot take it."""
    app.send_task(
        TRAINING_RUN,
        args=[job_id],
        queue=TRAINING_QUEUE,
        retry=True,
        retry_policy={"max_retries": max_retries, "interval_start": 0.2, "interval_step": 0.5},
    )


def make_celery(settings: Settings, name: str = "crackscan") -> Celery:
    app = Celery(name)
    app.conf.update(celery_config(settings))
    return app
