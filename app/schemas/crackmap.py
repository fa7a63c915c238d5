"""The crack map JSON, versioned: the same schema for the CLI's crackmap.json and the API."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, Field

from models.inference import CrackMap, TileResult, TileTable

SCHEMA_VERSION = "crackscan.crackmap/2"


class TileRead(BaseModel):
    row: int
    col: int
    x: int = Field(description="left edge, pixels in the oriented photo")
    y: int = Field(description="top edge, pixels in the oriented photo")
    w: int
    h: int
    probs: dict[str, float] = Field(description="class name -> calibrated probability")
    defect_prob: float
    defect: bool


class TilingRead(BaseModel):
    tile: int
    stride: int
    input_size: int
    rows: int
    cols: int


class HeatmapRead(BaseModel):
    cell: int = Field(description="cell size in pixels")
    rows: int
    cols: int
    values: list[list[float]] = Field(
        description="mean defect probability of the tiles over each cell"
    )


class SummaryRead(BaseModel):
    tiles: int
    defect_tiles: int
    defect_area_fraction: float
    max_defect_prob: float
    class_counts: dict[str, int]
    threshold: float


class ModelStamp(BaseModel):
    backbone: str
    content_hash: str
    classes: list[str]
    defect_classes: list[str]
    input_size: int
    temperature: float
    operating_threshold: float = Field(0.5, description="the model's own defect threshold")
    tile_px: int | None = Field(None, description="the tile side it was trained on (masks sets)")
    loss: str | None = None
    device: str
    precision: str = Field("float32", description="float32, or bfloat16 / float16 autocast")
    tta: str = Field(
        "none", description="test-time augmentation averaged over: none, flip (2 views), d4 (8)"
    )
    model_id: str | None = None


class CrackMapRead(BaseModel):
    """Version 2: `tiles` may be null (a big map's tiles are paged); version 1 always listed them."""

    schema_version: Literal["crackscan.crackmap/2"] = "crackscan.crackmap/2"
    image: dict[str, int | str]
    model: ModelStamp
    tiling: TilingRead
    summary: SummaryRead
    tiles: list[TileRead] | None = Field(
        description="every tile, row-major; null in the API when the map has more tiles than "
        "CRACKSCAN_INLINE_TILES: page them at /v1/inspections/{id}/tiles"
    )
    heatmap: HeatmapRead
    timings: dict[str, float]
    created_at: datetime


def tile_read(tile: TileResult) -> TileRead:
    return TileRead(**vars(tile))


def tiles_read(table: TileTable) -> list[dict[str, object]]:
    """Every tile of the table as TileRead JSON, row-major."""
    return [tile_read(t).model_dump(mode="json") for t in table.tiles()]


def crackmap_read(
    crack_map: CrackMap, name: str = "", model_id: str | None = None, with_tiles: bool = True
) -> CrackMapRead:
    """Turn the engine's CrackMap into the versioned schema (tiles null unless `with_tiles`)."""
    heat = crack_map.heatmap
    return CrackMapRead(
        image={"name": name, "width": crack_map.width, "height": crack_map.height},
        model=ModelStamp(**crack_map.model, model_id=model_id),
        tiling=TilingRead(
            tile=crack_map.tile,
            stride=crack_map.stride,
            input_size=crack_map.input_size,
            rows=crack_map.rows,
            cols=crack_map.cols,
        ),
        summary=SummaryRead(**crack_map.summary()),
        tiles=[tile_read(t) for t in crack_map.table.tiles()] if with_tiles else None,
        heatmap=HeatmapRead(
            cell=crack_map.cell,
            rows=int(heat.shape[0]),
            cols=int(heat.shape[1]),
            values=[[round(float(v), 5) for v in row] for row in heat],
        ),
        timings={k: round(v, 4) for k, v in crack_map.timings.items()},
        created_at=datetime.now(UTC),
    )
