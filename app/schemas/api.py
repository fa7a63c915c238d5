"""Request and response bodies of the REST API (XCreate / XRead)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from models.backbones import BACKBONES
from models.training.config import DEFAULT_LOSS, LOSSES

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int


class InspectionRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    status: Literal["queued", "running", "succeeded", "failed"]
    filename: str
    width: int
    height: int
    params: dict[str, Any]
    model_id: str | None
    error: str | None
    created_at: datetime
    finished_at: datetime | None
    crackmap: dict[str, Any] | None = None
    overlay_url: str | None = None


class DatasetRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    name: str
    layout: str
    classes: list[str]
    defect_classes: list[str]
    counts: dict[str, Any]
    skipped: dict[str, Any]
    duplicates_removed: int
    created_at: datetime


class JobCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dataset_id: str
    backbone: Literal[BACKBONES]  # type: ignore[valid-type]
    loss: Literal[LOSSES] = DEFAULT_LOSS  # type: ignore[valid-type]
    epochs: int = Field(ge=1, le=1000)
    image_size: int = Field(ge=32, le=1024)
    batch_size: int = Field(ge=1, le=1024)
    base_model_id: str | None = None
    lr: float = Field(0.01, gt=0, le=10)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(1e-4, ge=0)
    lr_milestones: list[int] | None = None
    lam0: float = Field(0.5, ge=0)
    alpha0: float = Field(2.5, ge=0)
    gm_samples: int = Field(100, ge=1, le=10000)
    focal_gamma: float = Field(2.0, ge=0)
    diagonal_cov: bool = False
    seed: int = 0
    weights: Literal["imagenet"] | None = None
    auto_activate: bool = Field(
        False, description="activate the result if its val F beats the active model's"
    )


class EpochRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    epoch: int
    train_loss: float
    val_macro_f1: float
    metrics: dict[str, Any]


class JobRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    dataset_id: str
    base_model_id: str | None
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    config: dict[str, Any]
    auto_activate: bool
    progress: float
    epoch: int
    step: int
    attempts: int
    cancel_requested: bool
    error: str | None
    heartbeat_at: datetime | None
    result_model_id: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    epochs: list[EpochRead] = []


class ModelRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    name: str
    backbone: str
    classes: list[str]
    defect_classes: list[str]
    input_size: int
    temperature: float
    content_hash: str
    metrics: dict[str, Any]
    config: dict[str, Any]
    is_active: bool
    source_job_id: str | None
    parent_model_id: str | None
    created_at: datetime
