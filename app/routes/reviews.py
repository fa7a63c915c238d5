"""The review loop's routes: tiles to label, the tile crops, and the inspector's labels."""

from __future__ import annotations

import io
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.auth import InspectScope, ReadScope
from app.deps import SessionDep
from app.routes.common import Offset, commit, get_or_404, link
from app.routes.inspections import finished_inspection
from app.schemas.api import Page
from app.schemas.review import LabelRead, LabelsCreate, ReviewRead, ReviewTileRead
from app.services.photos import map_photo, stored_table
from core.errors import Unprocessable
from core.tables import Inspection, TileLabel, utcnow
from models.inference.review import pick_for_review, tile_crop

router = APIRouter(prefix="/v1/inspections", tags=["review"])
ReviewLimit = Annotated[int, Query(ge=1, le=200, description="tiles to label, at most")]
LabelLimit = Annotated[int, Query(ge=1, le=1000, description="labels per page")]


@router.get("/{inspection_id}/review", dependencies=[ReadScope], response_model=ReviewRead)
def review(
    inspection_id: str,
    request: Request,
    session: SessionDep,
    limit: ReviewLimit = 20,
    strategy: Annotated[
        str,
        Query(
            pattern="^(uncertainty|random|mixed)$",
            description="random by default: it scored best in bench.active_learning "
            "(docs/RESULTS.md §8)",
        ),
    ] = "random",
    seed: Annotated[int | None, Query(ge=0, le=2**32 - 1)] = None,
) -> ReviewRead:
    """Up to `limit` unlabelled, non-overlapping tiles to label, the most useful first."""
    row = finished_inspection(session, inspection_id)
    table = stored_table(session, row)
    model = (row.crackmap or {})["model"]
    threshold = float(model.get("operating_threshold", 0.5))
    labelled = {
        (r, c) for r, c in session.execute(_labels(inspection_id, TileLabel.row, TileLabel.col))
    }
    picked = pick_for_review(table, limit, strategy, threshold, labelled, seed)
    items = []
    for tile in table.tiles(picked):
        crop_url = link(
            request,
            "get_tile_crop",
            inspection_id=inspection_id,
            row=str(tile.row),
            col=str(tile.col),
        )
        items.append(
            ReviewTileRead(
                **{k: v for k, v in vars(tile).items() if k != "defect"},
                margin=abs(tile.defect_prob - threshold),
                crop_url=crop_url,
            )
        )
    return ReviewRead(
        inspection_id=inspection_id,
        strategy=strategy,
        threshold=threshold,
        classes=list(model["classes"]),
        labelled=len(labelled),
        items=items,
    )


@router.get(
    "/{inspection_id}/tiles/{row}/{col}.png",
    dependencies=[ReadScope],
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}},
)
def get_tile_crop(
    inspection_id: str, row: int, col: int, request: Request, session: SessionDep
) -> Response:
    """Tile (row, col) as the model saw it: cut from the stored photo, resized to its input."""
    inspection = finished_inspection(session, inspection_id)
    state = request.app.state
    photo, grid = map_photo(state.photos, session, inspection, state.settings.max_image_pixels)
    if not (0 <= row < grid.rows and 0 <= col < grid.cols):
        raise Unprocessable(
            f"tile ({row}, {col}) lies outside this map's {grid.rows} x {grid.cols} grid",
            field="row" if not 0 <= row < grid.rows else "col",
        )
    size = int((inspection.crackmap or {})["tiling"]["input_size"])
    buffer = io.BytesIO()
    tile_crop(photo, grid, row, col, size).save(buffer, format="PNG")
    return Response(buffer.getvalue(), media_type="image/png")


@router.post(
    "/{inspection_id}/labels",
    dependencies=[InspectScope],
    response_model=Page[LabelRead],
)
def add_labels(
    inspection_id: str, body: LabelsCreate, request: Request, session: SessionDep
) -> Page[LabelRead]:
    """Store the labels; a repeat for a tile replaces its earlier label. Answers what was stored."""
    row = finished_inspection(session, inspection_id)
    classes = list((row.crackmap or {})["model"]["classes"])
    tiling = (row.crackmap or {})["tiling"]
    latest: dict[tuple[int, int], str] = {}
    for number, label in enumerate(body.labels):
        if label.label not in classes:
            raise Unprocessable(
                f"labels[{number}]: {label.label!r} is not one of the model's classes {classes}",
                field=f"labels.{number}.label",
            )
        if label.row >= tiling["rows"] or label.col >= tiling["cols"]:
            raise Unprocessable(
                f"labels[{number}]: tile ({label.row}, {label.col}) lies outside this map's "
                f"{tiling['rows']} x {tiling['cols']} grid",
                field=f"labels.{number}",
            )
        latest[(label.row, label.col)] = label.label
    stored = _upsert(session, inspection_id, latest, request.state.api_key_id)
    commit(session)
    items = [LabelRead.model_validate(s) for s in stored]
    return Page[LabelRead](items=items, total=len(items), limit=len(items), offset=0)


@router.get("/{inspection_id}/labels", dependencies=[ReadScope], response_model=Page[LabelRead])
def list_labels(
    inspection_id: str, session: SessionDep, limit: LabelLimit = 200, offset: Offset = 0
) -> Page[LabelRead]:
    """The inspection's labels, row-major."""
    get_or_404(session, Inspection, inspection_id, "inspection")
    total = session.scalar(select(func.count()).where(TileLabel.inspection_id == inspection_id))
    query = _labels(inspection_id, TileLabel).order_by(TileLabel.row, TileLabel.col)
    rows = session.scalars(query.limit(limit).offset(offset))
    items = [LabelRead.model_validate(r) for r in rows]
    return Page[LabelRead](items=items, total=int(total or 0), limit=limit, offset=offset)


def _labels(inspection_id: str, *columns: Any) -> Any:
    return select(*columns).where(TileLabel.inspection_id == inspection_id)


def _upsert(
    session: Session, inspection_id: str, latest: dict[tuple[int, int], str], key_id: str | None
) -> list[TileLabel]:
    """Insert or replace one label per tile; the replaced label's giver and time are updated."""
    existing = {
        (t.row, t.col): t
        for t in session.scalars(
            _labels(inspection_id, TileLabel).where(
                TileLabel.row.in_({r for r, _ in latest}), TileLabel.col.in_({c for _, c in latest})
            )
        )
    }
    stored = []
    for (r, c), label in latest.items():
        row = existing.get((r, c))
        if row is None:
            row = TileLabel(inspection_id=inspection_id, row=r, col=c)
            session.add(row)
        row.label, row.api_key_id, row.created_at = label, key_id, utcnow()
        stored.append(row)
    return stored  # commit() flushes: a concurrent insert of the same tile is a 409 there
