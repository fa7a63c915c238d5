"""training.run: train or fine-tune one job, resumably, with the job row as the source of truth."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from celery import Task
from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy.exc import OperationalError

from core.blobs import delete_blob, store_bytes
from core.catalog import activate, active_model, model_row, val_macro_f1
from core.config import Settings, get_settings
from core.db import transaction
from core.queue import TRAINING_RUN
from core.statuses import JobStatus
from core.tables import TrainingJob, utcnow
from worker.celery_app import app
from worker.jobstore import (
    Claim,
    Heartbeat,
    claim,
    dataset_info,
    fetch_blob,
    finish,
    model_blob,
    new_owner,
    save_epoch,
    temp_dir,
)

if TYPE_CHECKING:  # the training code is imported lazily, in the forked child
    from models.checkpoint import Checkpoint
    from models.data import LabelledSet
    from models.training import TrainConfig

log = logging.getLogger("crackscan.training")


@app.task(
    name=TRAINING_RUN,
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(OperationalError,),  # the database went away: transient
    retry_backoff=True,
    max_retries=5,
)
def run_training(self: Task, job_id: str) -> str:
    """Run job `job_id` to an end state; safe to deliver twice (the lease decides)."""
    settings = get_settings()
    taken = claim(settings, job_id, new_owner())
    if isinstance(taken, str):
        log.info("job %s not run: %s", job_id, taken)
        return taken
    if taken.attempts > settings.job_max_attempts:
        finish(
            settings,
            taken,
            JobStatus.FAILED,
            f"gave up after {taken.attempts - 1} starts: its workers kept dying",
        )
        return JobStatus.FAILED
    try:
        return _train(settings, taken)
    except SoftTimeLimitExceeded:
        finish(
            settings,
            taken,
            JobStatus.FAILED,
            "the job ran past its time limit (CRACKSCAN_JOB_SOFT_TIME_LIMIT_S)",
        )
        return JobStatus.FAILED
    except OperationalError:
        raise
    except Exception as exc:
        log.exception("job %s failed", job_id)
        finish(settings, taken, JobStatus.FAILED, f"{type(exc).__name__}: {exc}")
        return JobStatus.FAILED


def _train(settings: Settings, job: Claim) -> str:
    # Imported here, in the forked child: the parent never initialises CUDA.
    from models.checkpoint import to_bytes
    from models.training import TrainConfig, fit

    config = TrainConfig.from_dict(job.config)
    with temp_dir() as tmp:
        data, base, resume = _job_inputs(settings, job, config, Path(tmp))
        with Heartbeat(settings, job) as beat:

            def progress(epoch: int, step: int, info: dict[str, Any]) -> None:
                beat.progress = {
                    "progress": round(float(info["percent"]), 2),
                    "epoch": epoch,
                    "step": step,
                }

            def epoch_end(record: dict[str, Any], last: Checkpoint, improved: bool) -> None:
                save_epoch(settings, job, record, to_bytes(last), beat.progress.get("progress"))

            result = fit(
                config,
                data,
                init=base if resume is None else None,
                resume=resume,
                progress=progress,
                should_cancel=beat.should_stop,
                on_epoch_end=epoch_end,
            )
            if beat.lost:
                log.warning("job %s: another worker took the lease; leaving it", job.job_id)
                return "lost lease"
        if result.cancelled:
            finish(settings, job, JobStatus.CANCELLED, None)
            return JobStatus.CANCELLED
        checkpoint = to_bytes(result.checkpoint)
    return _publish(settings, job, result.checkpoint, checkpoint)


def _job_inputs(
    settings: Settings, job: Claim, config: TrainConfig, folder: Path
) -> tuple[LabelledSet, Checkpoint | None, Checkpoint | None]:
    """The job's sets merged (in the base model's class order), its base model, and the
    checkpoint to resume from, fetched from the blob store into `folder`."""
    from models.checkpoint import load_checkpoint
    from models.data import DEFAULT_MASK_TILE, load_labelled_set, merge_sets

    if not job.dataset_ids:
        raise LookupError("the job's datasets no longer exist")
    sets = []
    for index, dataset_id in enumerate(job.dataset_ids):
        blob_id, defects, tile_px = dataset_info(settings, dataset_id)
        sets.append(
            load_labelled_set(
                fetch_blob(settings, blob_id, folder, f"dataset{index}.zip"),
                defect_classes=defects,
                seed=config.seed,
                mask_tile=tile_px or DEFAULT_MASK_TILE,
            )
        )
    data = merge_sets(sets)
    base = None
    if job.base_model_id:
        base = load_checkpoint(
            fetch_blob(settings, model_blob(settings, job.base_model_id), folder, "base.ckpt")
        )
        data = data.in_class_order(base.classes)
    resume = None
    if job.last_checkpoint_blob_id:
        resume = load_checkpoint(
            fetch_blob(settings, job.last_checkpoint_blob_id, folder, "last.ckpt")
        )
        epoch = (resume.training_state or {}).get("epoch")
        log.info("job %s resumes after epoch %s", job.job_id, epoch)
    return data, base, resume


def _publish(settings: Settings, job: Claim, ckpt: Checkpoint, data: bytes) -> str:
    """Store the final model as a new version; activate it if asked and better than the active one."""
    with transaction(settings.db_url) as session:
        row = session.get(TrainingJob, job.job_id)
        if row is None or row.lease_owner != job.owner:
            return "lost lease"
        blob = store_bytes(session, data, settings.blob_chunk_bytes)
        model = model_row(
            ckpt,
            blob.id,
            f"{ckpt.backbone}-{ckpt.config.get('loss')}-job-{job.job_id[:8]}",
            source_job_id=job.job_id,
            parent_model_id=job.base_model_id,
        )
        session.add(model)
        session.flush()
        if row.auto_activate and val_macro_f1(model) > val_macro_f1(active_model(session)):
            activate(session, model.id)
        row.result_model_id = model.id
        row.status, row.progress, row.error = JobStatus.SUCCEEDED, 100.0, None
        row.finished_at, row.lease_owner = utcnow(), None
        resumable, row.last_checkpoint_blob_id = row.last_checkpoint_blob_id, None
        session.flush()
        delete_blob(session, resumable)  # published: nothing left to resume
    return JobStatus.SUCCEEDED
