"""The review loop's bodies: tiles to label, labels given, and labels stored."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

MAX_LABELS_PER_REQUEST = 1000


class ReviewTileRead(BaseModel):
    row: int
    col: int
    x: int
    y: int
    w: int
    h: int
    probs: dict[str, float]
    defect_prob: float
    margin: float = Field(description="|defect_prob - the model's operating threshold|")
    crop_url: str = Field(description="the tile as the model saw it (PNG)")


class ReviewRead(BaseModel):
    inspection_id: str
    strategy: str
    threshold: float = Field(description="the model's operating threshold")
    classes: list[str]
    labelled: int = Field(description="tiles of this map labelled so far")
    items: list[ReviewTileRead]


class LabelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    row: int = Field(ge=0, le=1_000_000)
    col: int = Field(ge=0, le=1_000_000)
    label: str = Field(min_length=1, max_length=100)


class LabelsCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    labels: list[LabelIn] = Field(min_length=1, max_length=MAX_LABELS_PER_REQUEST)


class LabelRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    inspection_id: str
    row: int
    col: int
    label: str
    api_key_id: str | None
    created_at: datetime
