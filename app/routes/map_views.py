"""A finished map's photo (scaled JPEG, for viewers) and its defect tiles as GeoJSON."""

from __future__ import annotations

import io
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from PIL import Image

from app.auth import ReadScope
from app.deps import SessionDep
from app.routes.common import attachment
from app.routes.inspections import finished_inspection
from app.services.photos import map_photo, stored_table
from models.inference import geojson_of

router = APIRouter(prefix="/v1/inspections", tags=["inspections"])
MaxSide = Annotated[
    int, Query(ge=64, le=16384, description="longest side in pixels; never scaled up")
]


@router.get(
    "/{inspection_id}/photo.jpg",
    dependencies=[ReadScope],
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}},
)
def get_photo(
    inspection_id: str, request: Request, session: SessionDep, max_side: MaxSide = 4096
) -> Response:
    """The photo the map was made from, oriented as the map's pixel coordinates are, as a JPEG
    (TIFF uploads too, which browsers cannot show), scaled to at most `max_side`."""
    row = finished_inspection(session, inspection_id)
    state = request.app.state
    photo, _ = map_photo(state.photos, session, row, state.settings.max_image_pixels)
    scale = min(1.0, max_side / max(photo.size))
    if scale < 1.0:
        size = (max(1, round(photo.width * scale)), max(1, round(photo.height * scale)))
        photo = photo.resize(size, Image.Resampling.BILINEAR, reducing_gap=3.0)
    buffer = io.BytesIO()
    photo.convert("RGB").save(buffer, format="JPEG", quality=88)
    headers = {"Cache-Control": "private, max-age=3600"}  # a stored photo never changes
    return Response(buffer.getvalue(), media_type="image/jpeg", headers=headers)


@router.get(
    "/{inspection_id}/defects.geojson",
    dependencies=[ReadScope],
    response_class=JSONResponse,
    responses={200: {"content": {"application/geo+json": {}}}},
)
def get_geojson(
    inspection_id: str,
    session: SessionDep,
    threshold: Annotated[
        float | None,
        Query(ge=0.0, le=1.0, description="defect threshold; the map's own when left out"),
    ] = None,
) -> JSONResponse:
    """The defect tiles as GeoJSON polygons in pixel coordinates (x right, y down)."""
    row = finished_inspection(session, inspection_id)
    table = stored_table(session, row)
    if threshold is not None:
        table.threshold = threshold
    return JSONResponse(
        geojson_of(table, row.width, row.height),
        media_type="application/geo+json",
        headers=attachment(f"{inspection_id}-defects.geojson"),
    )
