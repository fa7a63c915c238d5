"""/v1/models: trained and imported checkpoints; one is active for inspections."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import StreamingResponse
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app.auth import AdminScope, ReadScope
from app.deps import RegistryDep, SessionDep, SettingsDep
from app.routes.common import (
    NOT_MODIFIED,
    Limit,
    Offset,
    attachment,
    blob_response,
    commit,
    get_or_404,
    paginate,
    tagged_json,
)
from app.schemas.api import ModelRead, Page
from app.services.uploads import spooled
from core.blobs import store_file
from core.catalog import activate, model_row
from core.config import Settings
from core.errors import Conflict, Unprocessable
from core.tables import NetworkModel
from models.checkpoint import CheckpointError, load_checkpoint

router = APIRouter(prefix="/v1/models", tags=["models"])


@router.get("", dependencies=[ReadScope], response_model=Page[ModelRead], responses=NOT_MODIFIED)
def list_models(
    request: Request,
    session: SessionDep,
    limit: Limit = 50,
    offset: Offset = 0,
) -> Page[ModelRead]:
    query = select(NetworkModel).order_by(NetworkModel.created_at.desc(), NetworkModel.id)
    rows, total = paginate(session, query, limit, offset)
    page = Page[ModelRead](
        items=[ModelRead.model_validate(r) for r in rows], total=total, limit=limit, offset=offset
    )
    return tagged_json(request, page)  # type: ignore[return-value]


@router.get("/{model_id}", dependencies=[ReadScope], response_model=ModelRead)
def get_model(model_id: str, session: SessionDep) -> ModelRead:
    return ModelRead.model_validate(get_or_404(session, NetworkModel, model_id, "model"))


@router.post("", status_code=201, dependencies=[AdminScope], response_model=ModelRead)
async def import_model(
    request: Request,
    settings: SettingsDep,
    file: Annotated[UploadFile, File(description="a crackscan checkpoint (.ckpt)")],
    name: Annotated[str | None, Form(max_length=200)] = None,
) -> ModelRead:
    async with spooled(file, settings.max_upload_mb << 20, "model.ckpt") as path:
        return await asyncio.to_thread(
            store_model, request, settings, path, name or (file.filename or "imported")
        )


def store_model(request: Request, settings: Settings, path: Path, name: str) -> ModelRead:
    """Load (hash-checked) and store a checkpoint (blocking: run in a thread)."""
    try:
        ckpt = load_checkpoint(path)
    except CheckpointError as exc:
        raise Unprocessable(str(exc), field="file") from exc
    with request.app.state.sessions.begin() as session:
        blob = store_file(session, path, settings.blob_chunk_bytes, "application/octet-stream")
        row = model_row(ckpt, blob.id, name)
        session.add(row)
        session.flush()
        return ModelRead.model_validate(row)


@router.post(
    "/{model_id}/activate",
    dependencies=[AdminScope],
    response_model=ModelRead,
    responses={409: {"description": "a change to the catalogue raced this one: try again"}},
)
def activate_model(model_id: str, session: SessionDep, registry: RegistryDep) -> ModelRead:
    """Make the model the active one; parallel activations run one after the other."""
    try:
        body = ModelRead.model_validate(activate(session, model_id))
    except IntegrityError as exc:  # the one-active-model index, should a writer skip the lock
        session.rollback()
        raise Conflict(f"{model_id} was not activated: another model was at the same time") from exc
    commit(session)
    registry.forget(model_id)  # re-warmed on the next readiness check or inspection
    return body


@router.get(
    "/{model_id}/download",
    dependencies=[ReadScope],
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
def download_model(model_id: str, request: Request, session: SessionDep) -> StreamingResponse:
    row = get_or_404(session, NetworkModel, model_id, "model")
    filename = f"{row.name or row.id}-{row.content_hash[:12]}.ckpt"
    return blob_response(
        request.app.state.sessions, row.blob_id, "application/octet-stream", attachment(filename)
    )
