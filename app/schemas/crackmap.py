"""The crack map JSON, versioned: the same schema for the CLI's crackmap.json and the API."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, Field

from models.inference import CrackMap

SCHEMA_VERSION = "crackscan.crackmap/1"


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
    model_id: str | None = None


class CrackMapRead(BaseModel):
    schema_version: Literal["crackscan.crackmap/1"] = "crackscan.crackmap/1"
    image: dict[str, int | str]
    model: ModelStamp
    tiling: TilingRead
    summary: SummaryRead
    tiles: list[TileRead]
    heatmap: HeatmapRead
    timings: dict[str, float]
    created_at: datetime


def crackmap_read(crack_map: CrackMap, name: str = "", model_id: str | None = None) -> CrackMapRead:
    """Turn the engine's CrackMap into the versioned schema."""
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
        tiles=[TileRead(**vars(t)) for t in crack_map.tiles],
        heatmap=HeatmapRead(
            cell=crack_map.cell,
            rows=int(heat.shape[0]),
            cols=int(heat.shape[1]),
            values=[[round(float(v), 5) for v in row] for row in heat],
        ),
        timings={k: round(v, 4) for k, v in crack_map.timings.items()},
        created_at=datetime.now(UTC),
    )
