"""Request and response bodies of the REST API (XCreate / XRead)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, computed_field, model_validator

from core.statuses import InspectionStatus, JobStatus
from models.backbones import BACKBONES
from models.data.augment import AUGMENTS
from models.threshold import DEFAULT_THRESHOLD
from models.training.config import DEFAULT_LOSS, LOSSES, TrainConfig

T = TypeVar("T")
_DEFAULTS = TrainConfig()
MAX_SETS_PER_JOB = 8


class ErrorDetail(BaseModel):
    status: int
    code: str
    message: str
    field: str | None = None
    model_config = ConfigDict(extra="allow")  # e.g. details: the validation errors


class ErrorBody(BaseModel):
    """Every 4xx and 5xx answer: {"error": {"status", "code", "message", "field"}}."""

    error: ErrorDetail


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in (
        (400, "malformed request (e.g. a broken multipart body)"),
        (401, "missing, invalid or revoked API key"),
        (403, "the key lacks the scope"),
        (404, "no such item"),
        (409, "conflicts with the item's state"),
        (413, "upload or image too large"),
        (422, "invalid input"),
        (429, "busy: retry after Retry-After seconds"),
        (503, "a dependency (database, broker) is unavailable: retry after Retry-After seconds"),
    )
}


def iso_datetime_text(value: Any) -> Any:
    """Query times must be RFC 3339 text, not numbers read as Unix times."""
    if value is None or isinstance(value, datetime):
        return value
    try:
        if isinstance(value, str) and "T" in value.upper():
            return datetime.fromisoformat(value)
    except ValueError:
        pass
    raise ValueError("a date-time in RFC 3339 form, e.g. 2026-11-29T12:00:00Z")


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int


class InspectionRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    status: InspectionStatus
    filename: str
    width: int
    height: int
    params: dict[str, Any]
    model_id: str | None
    error: str | None
    created_at: datetime
    finished_at: datetime | None
    summary: dict[str, Any] | None = Field(
        None,
        description="the map's summary (tiles, defect tiles, class counts, threshold); lists "
        "carry it instead of the whole map",
    )
    crackmap: dict[str, Any] | None = None
    overlay_url: str | None = None
    tiles_url: str | None = Field(None, description="the map's tiles, paged and filtered (JSON)")
    tiles_npz_url: str | None = Field(
        None, description="all of the map's tiles in one compact NumPy .npz tile table"
    )
    photo_url: str | None = Field(None, description="the photo as a JPEG, optionally scaled")
    geojson_url: str | None = Field(None, description="the defect tiles as GeoJSON polygons")


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
    tile_px: int | None = Field(None, description="masks layout: tile side in photo pixels")
    details: dict[str, Any] | None = Field(
        None, description="masks layout: the tile rule, its counts and the photos per split"
    )
    created_at: datetime


class JobCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dataset_id: str | None = Field(
        None, min_length=1, max_length=64, description="one labelled set (or use dataset_ids)"
    )
    dataset_ids: list[Annotated[str, Field(min_length=1, max_length=64)]] | None = Field(
        None,
        min_length=1,
        max_length=MAX_SETS_PER_JOB,
        description="several labelled sets trained as one; each keeps its own split",
    )
    # The recipe's fields: a fine-tune (base_model_id) takes those the request leaves out
    # from its base model (models.training.config.INHERITED_FIELDS), a new model the
    # defaults shown here.
    backbone: Literal[BACKBONES] = _DEFAULTS.backbone  # type: ignore[valid-type]
    loss: Literal[LOSSES] = DEFAULT_LOSS  # type: ignore[valid-type]
    epochs: int = Field(ge=1, le=1000)
    tiles_per_epoch: int | None = Field(
        None,
        ge=1,
        le=100_000_000,
        description="train each epoch on a seeded, class-balanced sample of this many "
        "training tiles (another one each epoch); null: every training tile",
    )
    image_size: int = Field(_DEFAULTS.image_size, ge=32, le=1024)
    batch_size: int = Field(_DEFAULTS.batch_size, ge=1, le=1024)
    cpu_bf16: bool = Field(
        _DEFAULTS.cpu_bf16,
        description="on a CPU worker with native bf16, train in bf16 autocast (fp32 elsewhere)",
    )
    base_model_id: str | None = Field(None, min_length=1, max_length=64)
    lr: float = Field(0.01, gt=0, le=10)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(1e-4, ge=0, le=1)
    lr_milestones: list[Annotated[int, Field(ge=1, le=1000)]] | None = Field(None, max_length=20)
    lam0: float = Field(0.5, ge=0, le=100)
    alpha0: float = Field(2.5, ge=0, le=100)
    gm_samples: int = Field(100, ge=1, le=10000)
    focal_gamma: float = Field(2.0, ge=0, le=10)
    diagonal_cov: bool = False
    seed: int = Field(0, ge=0, le=2**32 - 1)
    weights: Literal["imagenet"] | None = None
    augment: Literal[AUGMENTS] = "survey"  # type: ignore[valid-type]
    target_precision: float | None = Field(
        None, gt=0, le=1, description="operating threshold: lowest reaching this val precision"
    )
    auto_activate: bool = Field(
        False,
        description="activate the result if its val F beats the active model's (feedback "
        "jobs: if its tile F1 on the held-back labelled tiles beats the base model's)",
    )
    feedback: bool = Field(
        False,
        description="fine-tune base_model_id on every stored tile label (split by photo), "
        "with dataset_ids too if given",
    )

    @model_validator(mode="after")
    def one_way_to_name_the_sets(self) -> JobCreate:
        if self.feedback and self.base_model_id is None:
            raise ValueError("a feedback job fine-tunes a model: give base_model_id")
        if self.dataset_id is not None and self.dataset_ids is not None:
            raise ValueError("give either dataset_id or dataset_ids")
        if not self.feedback and self.dataset_id is None and self.dataset_ids is None:
            raise ValueError("give either dataset_id or dataset_ids")
        ids = self.sets()
        if len(set(ids)) != len(ids):
            raise ValueError("dataset_ids names a set twice")
        return self

    def sets(self) -> list[str]:
        """The ids of the sets to train on, in order."""
        return list(self.dataset_ids or ([self.dataset_id] if self.dataset_id else []))

    def config_fields(self, given_only: bool = False) -> dict[str, Any]:
        """The TrainConfig fields of the request: all of them, or only those it gave."""
        fields = self.model_dump(
            exclude={"dataset_id", "dataset_ids", "base_model_id", "auto_activate", "feedback"}
        )
        return {k: v for k, v in fields.items() if not given_only or k in self.model_fields_set}


class EpochRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    epoch: int
    train_loss: float
    val_macro_f1: float
    metrics: dict[str, Any]


class JobRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    dataset_id: str | None = Field(description="the first set; null once it is deleted")
    dataset_ids: list[str] | None = Field(description="every set the job trains on")
    base_model_id: str | None
    status: JobStatus
    config: dict[str, Any]
    auto_activate: bool
    feedback: bool
    metrics: dict[str, Any] | None = Field(
        None,
        description="feedback jobs: base and new model on the held-back labelled tiles",
    )
    progress: float
    epoch: int = Field(description="epochs completed")
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


class ApiKeyRead(BaseModel):
    """An API key as listed: never the key itself, which is shown once, at creation."""

    model_config = ConfigDict(from_attributes=True)
    id: str
    name: str
    prefix: str
    scopes: list[str]
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


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

    @computed_field  # type: ignore[prop-decorator]
    @property
    def operating_threshold(self) -> float:
        """The defect threshold its maps use unless a request sets one (chosen on val)."""
        point = self.metrics.get("operating_point") or {}
        return float(point.get("threshold", DEFAULT_THRESHOLD))

    @computed_field  # type: ignore[prop-decorator]
    @property
    def tile_px(self) -> int | None:
        """The tile side in photo pixels it was trained on (masks sets): its default tile."""
        value = (self.metrics.get("data") or {}).get("tile_px")
        return None if value is None else int(value)
