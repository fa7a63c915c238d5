"""training.run: train or fine-tune one job, resumably, with the job row as the source of truth."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from celery import Task
from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from core.blobs import delete_blob, store_bytes
from core.catalog import activate, active_model, model_row, val_macro_f1
from core.config import Settings, get_settings
from core.db import transaction
from core.queue import TRAINING_RUN
from core.statuses import JobStatus
from core.tables import NetworkModel, TrainingJob, utcnow
from worker.celery_app import app
from worker.jobstore import (
    Claim,
    Heartbeat,
    claim,
    dataset_info,
    export_feedback,
    fetch_blob,
    finish,
    hand_back,
    model_blob,
    new_owner,
    save_epoch,
    temp_dir,
)
from worker.stopping import STOP, WorkerStopping, epoch_window_s, sigterm_asks_to_stop

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
    """Run job `job_id` to an end state; safe to deliver twice (the lease decides). A
    SIGTERM meanwhile stops it cleanly (worker/stopping.py)."""
    with sigterm_asks_to_stop():
        return _run_job(job_id)


def _run_job(job_id: str) -> str:
    settings = get_settings()
    if STOP.asked:  # given to this process during its worker's shutdown: leave the job be
        log.info("job %s not started: its worker is stopping", job_id)
        return "worker stopping"
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
    except WorkerStopping as stop:
        if hand_back(settings, taken):
            log.info("job %s handed back, its worker stopping: stopped %s", job_id, stop)
            return "handed back"
        return "lost lease"
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
    window_s = epoch_window_s(settings.worker_stop_grace_s)
    with temp_dir() as tmp:
        if STOP.asked:  # asked before the job began: nothing to lose
            raise WorkerStopping("before it began")
        data, base, resume, held_back = _job_inputs(settings, job, config, Path(tmp))
        with Heartbeat(settings, job) as beat:

            def should_stop() -> bool:
                """Polled every step: a cancel or a lost lease ends the run; a stop that
                the epoch under way cannot outlast hands the job back."""
                if STOP.past(window_s):
                    raise WorkerStopping(f"mid-epoch, {window_s:.0f} s after the stop")
                return beat.should_stop()

            def progress(epoch: int, step: int, info: dict[str, Any]) -> None:
                if "percent" not in info:  # decoding the tiles: no training progress yet
                    if STOP.asked:
                        raise WorkerStopping("while its tiles were decoded")
                    return
                done = epoch + 1 if info.get("phase") == "epoch_end" else epoch
                beat.progress = {
                    "progress": round(float(info["percent"]), 2),
                    "epoch": done,  # epochs completed, as save_epoch stores it
                    "step": step,
                }

            def epoch_end(record: dict[str, Any], last: Checkpoint, improved: bool) -> None:
                save_epoch(settings, job, record, to_bytes(last), beat.progress.get("progress"))
                if STOP.asked:  # the epoch under way finished and is stored: stop here
                    raise WorkerStopping(f"after epoch {record['epoch']}")

            result = fit(
                config,
                data,
                init=base if resume is None else None,
                resume=resume,
                progress=progress,
                should_cancel=should_stop,
                on_epoch_end=epoch_end,
            )
            if beat.lost:
                log.warning("job %s: another worker took the lease; leaving it", job.job_id)
                return "lost lease"
        if result.cancelled:
            finish(settings, job, JobStatus.CANCELLED, None)
            return JobStatus.CANCELLED
        checkpoint = to_bytes(result.checkpoint)
        metrics = None
        if held_back is not None and base is not None:
            metrics = {"feedback": held_back.compare(base, result.checkpoint)}
    return _publish(settings, job, result.checkpoint, checkpoint, metrics)


@dataclass
class HeldBack:
    """A feedback job's held-back labelled tiles: the test split of the labels' set."""

    data: LabelledSet
    summary: dict[str, Any]

    def compare(self, base: Checkpoint, new: Checkpoint) -> dict[str, Any]:
        """Tile detection of the base and the new model on the held-back tiles."""
        from models.evaluation import detection_on

        samples = self.data.splits["test"]
        return {
            "held_back_tiles": len(samples),
            "labels": self.summary,
            "base": detection_on(base, self.data, samples),
            "new": detection_on(new, self.data, samples),
        }


def _job_inputs(
    settings: Settings, job: Claim, config: TrainConfig, folder: Path
) -> tuple[LabelledSet, Checkpoint | None, Checkpoint | None, HeldBack | None]:
    """The job's sets merged (in the base model's class order), its base model, the
    checkpoint to resume from, and a feedback job's held-back labels, fetched into `folder`."""
    from models.checkpoint import load_checkpoint
    from models.data import merge_sets

    base = None
    if job.base_model_id:
        base = load_checkpoint(
            fetch_blob(settings, model_blob(settings, job.base_model_id), folder, "base.ckpt")
        )
    sets = _stored_sets(settings, job, config, folder)
    held_back = None
    if job.feedback and base is not None:
        held_back = _feedback_set(settings, base, config, folder)
        sets.append(held_back.data)
    if not sets:
        raise LookupError("the job's datasets no longer exist")
    data = merge_sets(sets)
    if base is not None:
        data = data.in_class_order(base.classes)
    resume = None
    if job.last_checkpoint_blob_id:
        resume = load_checkpoint(
            fetch_blob(settings, job.last_checkpoint_blob_id, folder, "last.ckpt")
        )
        epoch = (resume.training_state or {}).get("epoch")
        log.info("job %s resumes after epoch %s", job.job_id, epoch)
    return data, base, resume, held_back


def _stored_sets(
    settings: Settings, job: Claim, config: TrainConfig, folder: Path
) -> list[LabelledSet]:
    from models.data import DEFAULT_MASK_TILE, load_labelled_set

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
    return sets


def _feedback_set(
    settings: Settings, base: Checkpoint, config: TrainConfig, folder: Path
) -> HeldBack:
    """The stored labels as a set in the base model's classes (cut from the photos now:
    a resumed job reads the labels again)."""
    from models.data import load_labelled_set

    path, summary = export_feedback(settings, folder, config.seed)
    data = load_labelled_set(
        path, defect_classes=list(base.defect_classes), seed=config.seed, partial=True
    )
    return HeldBack(data.in_class_order(list(base.classes)), summary)


def _publish(
    settings: Settings,
    job: Claim,
    ckpt: Checkpoint,
    data: bytes,
    metrics: dict[str, Any] | None = None,
) -> str:
    """Store the final model as a new version; activate it if asked and better: than the
    active one on validation, or (feedback jobs) than the base on the held-back labels."""
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
        if row.auto_activate and _better(session, model, metrics):
            activate(session, model.id)
        row.metrics = metrics
        row.result_model_id = model.id
        row.status, row.progress, row.error = JobStatus.SUCCEEDED, 100.0, None
        row.finished_at, row.lease_owner = utcnow(), None
        resumable, row.last_checkpoint_blob_id = row.last_checkpoint_blob_id, None
        session.flush()
        delete_blob(session, resumable)  # published: nothing left to resume
    return JobStatus.SUCCEEDED


def _better(session: Session, model: NetworkModel, metrics: dict[str, Any] | None) -> bool:
    """Feedback jobs: higher held-back F1 than the base (fewer false alarms on a tie);
    others: higher validation macro F than the active model."""
    if metrics is None:
        return val_macro_f1(model) > val_macro_f1(active_model(session))
    base, new = metrics["feedback"]["base"], metrics["feedback"]["new"]
    return bool((new["f1"], -new["false_alarm_rate"]) > (base["f1"], -base["false_alarm_rate"]))
