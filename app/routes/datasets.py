"""/v1/datasets: labelled tile sets uploaded as zips, validated on arrival."""

from __future__ import annotations

import asyncio
import zipfile
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, File, Form, Request, Response, UploadFile
from sqlalchemy import select

from app.auth import ReadScope, TrainScope
from app.deps import SessionDep, SettingsDep
from app.routes.common import Limit, Offset, commit, get_or_404, paginate
from app.schemas.api import DatasetRead, Page
from app.services.uploads import spooled
from core.blobs import delete_blob, store_file
from core.config import Settings
from core.errors import Conflict, Unprocessable
from core.statuses import JOB_UNFINISHED
from core.tables import Dataset, TrainingJob
from models.data import DEFAULT_MASK_TILE, LabelledSet, load_labelled_set

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])


def validate_zip(
    path: str, defect_classes: list[str] | None, mask_tile: int, settings: Settings
) -> LabelledSet:
    """The set the zip holds, every image decoded once under the pixel cap, the tiles
    counted against CRACKSCAN_MAX_SET_TILES; 422 when it is not a usable set."""
    if not zipfile.is_zipfile(path):
        raise Unprocessable("the dataset must be a .zip file", field="file")
    try:
        return load_labelled_set(
            path,
            defect_classes=defect_classes,
            mask_tile=mask_tile,
            max_pixels=settings.max_image_pixels,
            max_tiles=settings.max_set_tiles,
        )
    except ValueError as exc:
        raise Unprocessable(str(exc), field="file") from exc


@router.post("", status_code=201, dependencies=[TrainScope], response_model=DatasetRead)
async def create_dataset(
    request: Request,
    settings: SettingsDep,
    file: Annotated[UploadFile, File(description="zip of a labelled tile set")],
    name: Annotated[str | None, Form(max_length=200)] = None,
    defect_classes: Annotated[
        str | None, Form(description="comma-separated defect class names")
    ] = None,
    mask_tile: Annotated[
        int,
        Form(ge=8, le=1024, description="photos with masks: tile side in pixels (stride: half)"),
    ] = DEFAULT_MASK_TILE,
) -> DatasetRead:
    """Checked in full before it is stored; at most CRACKSCAN_DATASET_UPLOAD_SLOTS at once
    (each decodes every image of its set), more answer 429."""
    with request.app.state.dataset_slots.hold():
        async with spooled(file, settings.max_upload_mb << 20, "dataset.zip") as path:
            defects = (
                [c.strip() for c in defect_classes.split(",") if c.strip()]
                if defect_classes
                else None
            )
            data = await asyncio.to_thread(validate_zip, str(path), defects, mask_tile, settings)
            return await asyncio.to_thread(
                store_dataset, request, settings, path, name or (file.filename or "dataset"), data
            )


def store_dataset(
    request: Request, settings: Settings, path: Path, name: str, data: LabelledSet
) -> DatasetRead:
    """Store the zip and its row in one transaction (blocking: run in a thread)."""
    summary = data.summary()
    with request.app.state.sessions.begin() as session:
        blob = store_file(session, path, settings.blob_chunk_bytes, "application/zip")
        row = Dataset(
            name=name,
            blob_id=blob.id,
            layout=data.layout,
            classes=data.classes,
            defect_classes=data.defect_classes,
            counts=data.counts(),
            skipped={"count": len(data.skipped), "examples": summary["skipped_examples"]},
            duplicates_removed=data.duplicates_removed,
            tile_px=data.tile_px,
            details=None
            if data.tile_px is None
            else {k: summary[k] for k in ("tile_rule", "tiles", "photos")},
        )
        session.add(row)
        session.flush()
        return DatasetRead.model_validate(row)


@router.get("", dependencies=[ReadScope], response_model=Page[DatasetRead])
def list_datasets(
    session: SessionDep,
    limit: Limit = 50,
    offset: Offset = 0,
) -> Page[DatasetRead]:
    rows, total = paginate(
        session, select(Dataset).order_by(Dataset.created_at.desc(), Dataset.id), limit, offset
    )
    return Page[DatasetRead](
        items=[DatasetRead.model_validate(r) for r in rows], total=total, limit=limit, offset=offset
    )


@router.get("/{dataset_id}", dependencies=[ReadScope], response_model=DatasetRead)
def get_dataset(dataset_id: str, session: SessionDep) -> DatasetRead:
    return DatasetRead.model_validate(get_or_404(session, Dataset, dataset_id, "dataset"))


@router.delete("/{dataset_id}", status_code=204, dependencies=[TrainScope])
def delete_dataset(dataset_id: str, session: SessionDep) -> Response:
    row = get_or_404(session, Dataset, dataset_id, "dataset")
    active = session.execute(
        select(TrainingJob.id, TrainingJob.dataset_id, TrainingJob.dataset_ids).where(
            TrainingJob.status.in_(JOB_UNFINISHED)
        )
    ).all()  # unfinished jobs: few, bounded by the workers and the queue
    busy = next(
        (
            job_id
            for job_id, first, ids in active
            if dataset_id == first or dataset_id in (ids or [])
        ),
        None,
    )
    if busy:
        raise Conflict(
            f"dataset {dataset_id} is used by training job {busy}; cancel it or wait for it"
        )
    blob_id = row.blob_id
    session.delete(row)
    session.flush()
    delete_blob(session, blob_id)
    commit(session)
    return Response(status_code=204)
