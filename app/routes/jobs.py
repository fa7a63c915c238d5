"""/v1/jobs: training and fine-tuning jobs, run by the Celery workers."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from app.auth import ReadScope, TrainScope
from app.deps import SessionDep, SettingsDep
from app.errors import scrub
from app.routes.common import (
    NOT_MODIFIED,
    Limit,
    Offset,
    commit,
    get_or_404,
    link,
    paginate,
    tagged_json,
)
from app.schemas.api import EpochRead, JobCreate, JobRead, Page
from core.errors import Conflict, ServiceUnavailable, Unprocessable
from core.feedback import label_classes, labelled_inspections
from core.statuses import JOB_FINAL, JobStatus
from core.tables import Dataset, EpochMetric, NetworkModel, TrainingJob, utcnow
from models.data.feedback import photo_splits
from models.data.merge import reconcile_classes
from models.training import TrainConfig
from models.training.config import inherited_from

router = APIRouter(prefix="/v1/jobs", tags=["training jobs"])
ENQUEUE_RETRY_AFTER_S = 30  # when the broker is down


def job_read(session: Session, row: TrainingJob, with_epochs: bool = True) -> JobRead:
    body = JobRead.model_validate(row)
    body.error = scrub(row.error) if row.error else None
    if with_epochs:
        epochs = session.scalars(
            select(EpochMetric).where(EpochMetric.job_id == row.id).order_by(EpochMetric.epoch)
        )
        body.epochs = [EpochRead.model_validate(e) for e in epochs]
    return body


@router.post("", status_code=202, dependencies=[TrainScope], response_model=JobRead)
def create_job(body: JobCreate, request: Request) -> JSONResponse:
    with request.app.state.sessions.begin() as session:
        datasets = [get_or_404(session, Dataset, i, "dataset") for i in body.sets()]
        classes, base = _classes_of(datasets), None
        fields = body.config_fields()
        if body.base_model_id:
            base = get_or_404(session, NetworkModel, body.base_model_id, "model")
            inherited = inherited_from(base.backbone, base.input_size, base.config or {})
            fields = {**fields, **inherited, **body.config_fields(given_only=True)}
            _check_base(base, classes, fields["backbone"])
        if body.feedback and base is not None:  # the schema asks feedback for a base model
            _check_feedback(session, base, body.seed)
        try:
            config = TrainConfig(**fields)
        except (TypeError, ValueError) as exc:  # an imported model's odd recorded recipe
            raise Unprocessable(str(exc)) from exc
        job_id = _add_job(
            session,
            [d.id for d in datasets],
            body.base_model_id,
            config.to_dict(),
            body.auto_activate,
            body.feedback,
        )
    return _enqueue(request, job_id)


def _add_job(
    session: Session,
    dataset_ids: list[str],
    base_model_id: str | None,
    config: dict[str, Any],
    auto_activate: bool,
    feedback: bool,
) -> str:
    """Store a queued job row (not yet sent to the broker); its id."""
    job = TrainingJob(
        dataset_id=dataset_ids[0] if dataset_ids else None,
        dataset_ids=dataset_ids,
        base_model_id=base_model_id,
        config=config,
        auto_activate=auto_activate,
        feedback=feedback,
        status=JobStatus.QUEUED,
    )
    session.add(job)
    session.flush()
    return str(job.id)


def _enqueue(request: Request, job_id: str) -> JSONResponse:
    """Queue a stored job (after its commit: the worker reads the row); 202 with the job.
    When the broker cannot take it, the row is deleted again and the answer is a 503."""
    if not request.app.state.jobs.enqueue(job_id):
        with request.app.state.sessions.begin() as session:
            session.execute(delete(TrainingJob).where(TrainingJob.id == job_id))
        raise ServiceUnavailable(
            "the job queue (broker) cannot be reached; the job was not stored, submit it again",
            headers={"Retry-After": str(ENQUEUE_RETRY_AFTER_S)},
        )
    with request.app.state.sessions.begin() as session:
        get_or_404(session, TrainingJob, job_id, "job").enqueued_at = utcnow()
    with request.app.state.sessions() as session:
        row = get_or_404(session, TrainingJob, job_id, "job")
        content = job_read(session, row).model_dump(mode="json")
    location = link(request, "get_job", job_id=job_id)
    return JSONResponse(content, status_code=202, headers={"Location": location})


def _classes_of(datasets: list[Dataset]) -> list[str] | None:
    """The merged classes of the job's sets (None without sets); 422 when they cannot merge."""
    if not datasets:
        return None
    try:
        classes, _, _ = reconcile_classes(
            [(d.id, list(d.classes), list(d.defect_classes)) for d in datasets]
        )
    except ValueError as exc:
        raise Unprocessable(str(exc), field="dataset_ids") from exc
    return classes


def _check_base(base: NetworkModel, classes: list[str] | None, backbone: str) -> None:
    """422 unless the base model has the data's classes and the job's backbone."""
    if classes is not None and sorted(base.classes) != sorted(classes):
        raise Unprocessable(
            f"model {base.id} knows classes {base.classes}, the data has {classes}",
            field="base_model_id",
        )
    if base.backbone != backbone:
        raise Unprocessable(
            f"model {base.id} is a {base.backbone}, not a {backbone}", field="backbone"
        )


def _check_feedback(session: Session, base: NetworkModel, seed: int) -> None:
    """422 unless the stored labels use the base model's classes and cover enough photos."""
    unknown = label_classes(session) - set(base.classes)
    if unknown:
        raise Unprocessable(
            f"the stored labels use classes {sorted(unknown)} that model {base.id} lacks "
            f"({base.classes})",
            field="feedback",
        )
    try:
        photo_splits(labelled_inspections(session), seed)
    except ValueError as exc:
        raise Unprocessable(str(exc), field="feedback") from exc


@router.post("/{job_id}/retry", status_code=202, dependencies=[TrainScope], response_model=JobRead)
def retry_job(job_id: str, request: Request) -> JSONResponse:
    """Run a failed or cancelled job again: a new job with the same sets, base model and
    config (the old one keeps its record); 409 while it runs or once it succeeded."""
    with request.app.state.sessions.begin() as session:
        old = get_or_404(session, TrainingJob, job_id, "job")
        if old.status not in (JobStatus.FAILED, JobStatus.CANCELLED):
            raise Conflict(
                f"job {job_id} is {old.status}: only a failed or cancelled job is retried"
            )
        for dataset_id in old.dataset_ids or []:
            if session.get(Dataset, dataset_id) is None:
                raise Conflict(f"job {job_id} trained on dataset {dataset_id}, now deleted")
        if old.base_model_id is not None:
            base = session.get(NetworkModel, old.base_model_id)
            if base is None:
                raise Conflict(f"job {job_id} started from model {old.base_model_id}, now deleted")
            if old.feedback:
                _check_feedback(session, base, int(old.config.get("seed", 0)))
        new_id = _add_job(
            session,
            list(old.dataset_ids or []),
            old.base_model_id,
            dict(old.config),
            old.auto_activate,
            old.feedback,
        )
    return _enqueue(request, new_id)


@router.get("", dependencies=[ReadScope], response_model=Page[JobRead], responses=NOT_MODIFIED)
def list_jobs(
    request: Request,
    session: SessionDep,
    status: JobStatus | None = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> Page[JobRead]:
    query = select(TrainingJob).order_by(TrainingJob.created_at.desc(), TrainingJob.id)
    if status:
        query = query.where(TrainingJob.status == status)
    rows, total = paginate(session, query, limit, offset)
    page = Page[JobRead](
        items=[job_read(session, r, False) for r in rows], total=total, limit=limit, offset=offset
    )
    return tagged_json(request, page)  # type: ignore[return-value]


@router.get("/{job_id}", dependencies=[ReadScope], response_model=JobRead, responses=NOT_MODIFIED)
def get_job(job_id: str, request: Request, session: SessionDep) -> JobRead:
    """The job with its per-epoch metrics; a 304 when If-None-Match names its ETag."""
    body = job_read(session, get_or_404(session, TrainingJob, job_id, "job"))
    return tagged_json(request, body)  # type: ignore[return-value]


def _cancel_if_nobody_holds(session: Session, job_id: str, lease_s: float) -> None:
    """Cancel a running job whose lease is stale, in one UPDATE: a worker that renews it
    meanwhile keeps it (and sees the cancel flag at its next heartbeat)."""
    stale = utcnow() - timedelta(seconds=lease_s)
    session.execute(
        update(TrainingJob)
        .where(
            TrainingJob.id == job_id,
            TrainingJob.status == JobStatus.RUNNING,
            or_(TrainingJob.heartbeat_at.is_(None), TrainingJob.heartbeat_at < stale),
        )
        .values(status=JobStatus.CANCELLED, finished_at=utcnow(), lease_owner=None)
    )


@router.post("/{job_id}/cancel", dependencies=[TrainScope], response_model=JobRead)
def cancel_job(job_id: str, session: SessionDep, settings: SettingsDep) -> JobRead:
    """A queued job, or a running one whose worker died (its heartbeat is older than the
    lease), is cancelled at once; a running one stops at its worker's next step."""
    row = get_or_404(session, TrainingJob, job_id, "job")
    if row.status in JOB_FINAL:
        raise Conflict(f"job {job_id} has already ended ({row.status})")
    row.cancel_requested = True
    if row.status == JobStatus.QUEUED:
        row.status, row.finished_at = JobStatus.CANCELLED, utcnow()
    session.flush()
    if row.status == JobStatus.RUNNING:
        _cancel_if_nobody_holds(session, job_id, settings.job_lease_s)
        session.refresh(row)
    body = job_read(session, row)
    commit(session)
    return body
