"""/v1/inspections: upload a photo, get its crack map and overlay."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, Request, Response, UploadFile
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import AfterValidator, BeforeValidator
from sqlalchemy import delete as sa_delete
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.auth import InspectScope, ReadScope
from app.deps import RegistryDep, RunnerDep, SessionDep, SettingsDep
from app.errors import scrub
from app.routes.common import (
    NOT_MODIFIED,
    Limit,
    Offset,
    attachment,
    blob_response,
    commit,
    etag_of,
    get_or_404,
    in_utc,
    link,
    not_modified,
    paginate,
    tagged_json,
)
from app.schemas.api import InspectionRead, Page, iso_datetime_text
from app.schemas.crackmap import TileRead, tile_read, tiles_read
from app.services.inspections import TILES_MEDIA, read_tile_table
from app.services.uploads import spooled
from core.blobs import delete_blob, store_file
from core.config import Settings
from core.errors import Conflict, PayloadTooLarge, Unprocessable
from core.statuses import INSPECTION_FINAL, InspectionStatus
from core.tables import Inspection, TileLabel
from models.imageio import ImageDecodeError
from models.inference import (
    ImageTooLargeError,
    check_complete,
    inspection_grid,
    oriented_size,
    probe,
)
from models.inference.inspection_grid import GridFacts

QueryTime = Annotated[
    datetime | None, BeforeValidator(iso_datetime_text), AfterValidator(in_utc), Query()
]
TileLimit = Annotated[int, Query(ge=1, le=5000, description="tiles per page")]
router = APIRouter(prefix="/v1/inspections", tags=["inspections"])


def inspection_read(
    row: Inspection, request: Request, session: Session | None = None
) -> InspectionRead:
    """The inspection; with its crack map when a session is given to read the tiles from."""
    body = InspectionRead.model_validate(row)
    body.error = scrub(row.error) if row.error else None
    body.crackmap = None
    body.summary = (row.crackmap or {}).get("summary")
    if session is not None and row.crackmap is not None:
        body.crackmap = crackmap_with_tiles(session, row, request.app.state.settings.inline_tiles)
    if row.status == InspectionStatus.SUCCEEDED:
        body.overlay_url = link(request, "get_overlay", inspection_id=row.id)
        body.tiles_url = link(request, "list_tiles", inspection_id=row.id)
        body.photo_url = link(request, "get_photo", inspection_id=row.id)
        body.geojson_url = link(request, "get_geojson", inspection_id=row.id)
        if row.tiles_blob_id is not None:
            body.tiles_npz_url = link(request, "get_tiles_npz", inspection_id=row.id)
    return body


def crackmap_with_tiles(session: Session, row: Inspection, inline_tiles: int) -> dict[str, Any]:
    """The stored map, with its tiles listed when there are at most `inline_tiles` of them."""
    document = dict(row.crackmap or {})
    if row.tiles_blob_id is None:  # stored before tile tables (migration 0006): inline tiles
        return document
    if document["summary"]["tiles"] <= inline_tiles:
        document["tiles"] = tiles_read(read_tile_table(session, row.tiles_blob_id))
    return document


@router.post(
    "",
    status_code=201,
    dependencies=[InspectScope],
    response_model=InspectionRead,
    responses={202: {"model": InspectionRead}, 429: {"description": "queue full"}},
)
async def create_inspection(
    request: Request,
    settings: SettingsDep,
    registry: RegistryDep,
    runner: RunnerDep,
    image: Annotated[UploadFile, File(description="JPEG, PNG or TIFF survey photo")],
    tile: Annotated[int | None, Form(ge=8, le=4096)] = None,
    stride: Annotated[int | None, Form(ge=2, le=4096)] = None,
    threshold: Annotated[float | None, Form(ge=0.0, le=1.0)] = None,
    model_id: Annotated[str | None, Form()] = None,
) -> Response:
    runner.reserve()
    submitted = False
    try:
        async with spooled(image, settings.max_upload_mb << 20, "image") as path:
            width, height = await _checked_photo(path, settings.max_image_pixels)
            model_id, predictor = await asyncio.to_thread(registry.get, model_id)
            _check_tiles(predictor.checkpoint, width, height, tile, stride, settings)
            row = Inspection(
                filename=image.filename or "image",
                width=width,
                height=height,
                params={"tile": tile, "stride": stride, "threshold": threshold},
                model_id=model_id,
                status=InspectionStatus.QUEUED,
                **runner.lease(),
            )
            media = image.content_type or "application/octet-stream"
            inspection_id = await asyncio.to_thread(store_inspection, request, path, media, row)
            future = runner.submit(inspection_id)
            submitted = True
    finally:
        if not submitted:
            runner.release()
    with contextlib.suppress(TimeoutError):
        # shield: giving up waiting must not cancel the inspection's future
        await asyncio.wait_for(
            asyncio.shield(asyncio.wrap_future(future)), timeout=settings.inspection_wait_s
        )
    body = await asyncio.to_thread(_read_body, request, inspection_id)
    location = link(request, "get_inspection", inspection_id=inspection_id)
    code = 201 if body["status"] in INSPECTION_FINAL else 202
    return JSONResponse(body, status_code=code, headers={"Location": location})


async def _checked_photo(path: Path, max_pixels: int) -> tuple[int, int]:
    """(width, height) of a complete photo under the pixel cap, as it is seen (EXIF
    orientation applied, as the map measures it); 413 or 422 otherwise."""
    try:
        probe(path, max_pixels)
        width, height = oriented_size(path)
        await asyncio.to_thread(check_complete, path)  # decodes every pixel: off the loop
    except ImageTooLargeError as exc:
        raise PayloadTooLarge(str(exc), field="image") from exc
    except ImageDecodeError as exc:
        raise Unprocessable(str(exc), field="image") from exc
    return width, height


def _check_tiles(
    model: GridFacts,
    width: int,
    height: int,
    tile: int | None,
    stride: int | None,
    settings: Settings,
) -> None:
    """422 when the grid the model will cut (inspection_grid, as the predictor cuts it)
    does not fit the photo, or holds more tiles than the cap."""
    field = "stride" if stride else "tile"
    try:
        grid = inspection_grid(model, height, width, tile, stride)
    except ValueError as exc:
        raise Unprocessable(str(exc), field=field) from exc
    tiles = len(grid)
    if tiles > settings.max_tiles_per_inspection:
        raise Unprocessable(
            f"tile {grid.tile} at stride {grid.stride} cuts this {width}x{height} photo "
            f"into {tiles:,} tiles, over the cap of {settings.max_tiles_per_inspection:,} "
            "(CRACKSCAN_MAX_TILES_PER_INSPECTION): use a larger tile or stride",
            field=field,
        )


def _read_body(request: Request, inspection_id: str) -> dict[str, Any]:
    """The inspection as JSON (blocking: run in a thread)."""
    with request.app.state.sessions() as session:
        row = get_or_404(session, Inspection, inspection_id, "inspection")
        return inspection_read(row, request, session).model_dump(mode="json")


def store_inspection(request: Request, path: Path, media_type: str, row: Inspection) -> str:
    """Store the photo and the queued row in one transaction (blocking: run in a thread)."""
    settings = request.app.state.settings
    with request.app.state.sessions.begin() as session:
        row.image_blob_id = store_file(session, path, settings.blob_chunk_bytes, media_type).id
        session.add(row)
        session.flush()
        return str(row.id)


@router.get(
    "", dependencies=[ReadScope], response_model=Page[InspectionRead], responses=NOT_MODIFIED
)
def list_inspections(
    request: Request,
    session: SessionDep,
    status: InspectionStatus | None = None,
    created_after: QueryTime = None,
    created_before: QueryTime = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> Page[InspectionRead]:
    query = select(Inspection).order_by(Inspection.created_at.desc(), Inspection.id)
    if status:
        query = query.where(Inspection.status == status)
    if created_after:
        query = query.where(Inspection.created_at >= created_after)
    if created_before:
        query = query.where(Inspection.created_at < created_before)
    rows, total = paginate(session, query, limit, offset)
    items = [inspection_read(r, request) for r in rows]
    page = Page[InspectionRead](items=items, total=total, limit=limit, offset=offset)
    return tagged_json(request, page)  # type: ignore[return-value]


@router.get(
    "/{inspection_id}",
    dependencies=[ReadScope],
    response_model=InspectionRead,
    responses=NOT_MODIFIED,
)
def get_inspection(
    inspection_id: str, request: Request, response: Response, session: SessionDep
) -> InspectionRead | Response:
    """The inspection with its crack map. Its ETag changes only when the inspection does, so
    a poller sending If-None-Match gets a bodiless 304 and the tiles are not even read."""
    row = get_or_404(session, Inspection, inspection_id, "inspection")
    etag = etag_of(
        row.id, row.status, row.finished_at, row.error, row.tiles_blob_id,
        request.app.state.settings.inline_tiles,
    )  # fmt: skip
    if (unchanged := not_modified(request, etag)) is not None:
        return unchanged
    response.headers["ETag"] = etag
    return inspection_read(row, request, session)


@router.get("/{inspection_id}/tiles", dependencies=[ReadScope], response_model=Page[TileRead])
def list_tiles(
    inspection_id: str,
    session: SessionDep,
    defect: Annotated[
        bool | None, Query(description="only defect (true) or clear (false) tiles")
    ] = None,
    min_prob: Annotated[
        float, Query(ge=0.0, le=1.0, description="lowest defect probability")
    ] = 0.0,
    limit: TileLimit = 500,
    offset: Offset = 0,
) -> Page[TileRead]:
    """The map's tiles in row-major order, filtered, one page at a time."""
    row = finished_inspection(session, inspection_id)
    if row.tiles_blob_id is None:  # stored before tile tables: page the inline list
        kept = [
            TileRead.model_validate(t)
            for t in (row.crackmap or {}).get("tiles") or []
            if (defect is None or t["defect"] == defect) and t["defect_prob"] >= min_prob
        ]
        return Page[TileRead](
            items=kept[offset : offset + limit], total=len(kept), limit=limit, offset=offset
        )
    table = read_tile_table(session, row.tiles_blob_id)
    picked = table.select(defect, min_prob)
    items = [tile_read(t) for t in table.tiles(picked[offset : offset + limit])]
    return Page[TileRead](items=items, total=len(picked), limit=limit, offset=offset)


@router.get(
    "/{inspection_id}/tiles.npz",
    dependencies=[ReadScope],
    response_class=StreamingResponse,
    responses={200: {"content": {TILES_MEDIA: {}}}},
)
def get_tiles_npz(inspection_id: str, request: Request, session: SessionDep) -> StreamingResponse:
    """All tiles as one NumPy .npz tile table (models.inference.TileTable.from_npz reads it)."""
    row = finished_inspection(session, inspection_id)
    if row.tiles_blob_id is None:
        raise Conflict(
            f"inspection {inspection_id} was stored before tile tables: its tiles are inline "
            "in the crack map and at /tiles"
        )
    disposition = attachment(f"{inspection_id}-tiles.npz")
    return blob_response(request.app.state.sessions, row.tiles_blob_id, TILES_MEDIA, disposition)


def finished_inspection(session: Session, inspection_id: str) -> Inspection:
    """The succeeded inspection; 404 when there is none, 409 while it has no map."""
    row = get_or_404(session, Inspection, inspection_id, "inspection")
    if row.status != InspectionStatus.SUCCEEDED:
        raise Conflict(f"inspection {inspection_id} is {row.status}: it has no tiles")
    return row


@router.get(
    "/{inspection_id}/overlay.png",
    dependencies=[ReadScope],
    response_class=StreamingResponse,
    responses={200: {"content": {"image/png": {}}}},
)
def get_overlay(inspection_id: str, request: Request, session: SessionDep) -> StreamingResponse:
    row = get_or_404(session, Inspection, inspection_id, "inspection")
    if row.overlay_blob_id is None:
        raise Conflict(f"inspection {inspection_id} is {row.status}: it has no overlay")
    return blob_response(request.app.state.sessions, row.overlay_blob_id, "image/png")


@router.delete("/{inspection_id}", status_code=204, dependencies=[InspectScope])
def delete_inspection(inspection_id: str, session: SessionDep, runner: RunnerDep) -> Response:
    """Delete it with its files and labels; one still queued or running here gives its place
    in the queue back at once."""
    row = get_or_404(session, Inspection, inspection_id, "inspection")
    blobs = [row.image_blob_id, row.overlay_blob_id, row.tiles_blob_id]
    session.execute(sa_delete(TileLabel).where(TileLabel.inspection_id == inspection_id))
    session.delete(row)
    session.flush()
    for blob_id in blobs:
        delete_blob(session, blob_id)
    commit(session)
    runner.forget(inspection_id)
    return Response(status_code=204)
