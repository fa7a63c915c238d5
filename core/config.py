"""Settings, read from CRACKSCAN_* environment variables (pydantic-settings)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every setting of the service and the workers. Environment: CRACKSCAN_<NAME>."""

    model_config = SettingsConfigDict(env_prefix="CRACKSCAN_", env_file=None, extra="ignore")

    environment: Literal["development", "production"] = Field(
        "development", description="production refuses development-only switches"
    )
    data_dir: Path = Field(Path("data"), description="folder for the embedded database and broker")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; default: SQLite file crackscan.db in the data folder"
    )
    broker_url: str | None = Field(
        None,
        description="Celery broker (redis://...); default: a filesystem queue in the data folder",
    )
    auth_disabled: bool = Field(False, description="serve without API keys (development only)")
    embedded_worker: bool = Field(
        True,
        description="with no broker configured, `crackscan serve` starts a Celery worker process too",
    )
    max_upload_mb: int = Field(512, description="largest accepted upload, in MiB")
    max_image_pixels: int = Field(
        250_000_000, description="pixel cap checked from the image header"
    )
    max_set_tiles: int = Field(
        1_000_000,
        ge=1,
        description="most tiles one uploaded set may hold (its images, or the tiles its "
        "photos cut into at mask_tile), counted from headers before anything is decoded",
    )
    dataset_upload_slots: int = Field(
        2,
        ge=1,
        description="set uploads checked at once by one API process; more answer 429 with "
        "Retry-After",
    )
    inspection_queue_size: int = Field(
        8, description="inspections accepted but not finished, at most"
    )
    max_tiles_per_inspection: int = Field(
        250_000, ge=1, description="most tiles one inspection may cut (tile and stride decide)"
    )
    inline_tiles: int = Field(
        10_000,
        ge=0,
        le=250_000,
        description="maps with at most this many tiles list them inline in GET "
        "/v1/inspections/{id}; bigger ones are paged at /v1/inspections/{id}/tiles",
    )
    review_cache_pixels: int = Field(
        100_000_000,
        ge=0,
        description="decoded photos kept for review crops, in pixels (the last one is always kept)",
    )
    photo_decode_mb: int = Field(
        1024,
        ge=1,
        description="memory the photo decodes for review crops and photo.jpg may take at once, "
        "in MiB (4 bytes a pixel; one decode may always run): past it, 503 with Retry-After",
    )
    inspection_lease_s: float = Field(
        30.0,
        gt=0,
        description="an API process's hold on its unfinished inspections, renewed "
        "every third of it; another process takes them over once it runs out",
    )
    inspection_wait_s: float = Field(20.0, description="how long POST waits before answering 202")
    inference_device: str = Field("auto", description="auto, cpu or cuda[:N]")
    max_loaded_models: int = Field(
        3, ge=1, description="models kept loaded for inspections (least recently used dropped)"
    )
    inference_batch_size: int | None = Field(
        None,
        ge=1,
        le=4096,
        description="tiles per forward pass; default 32 on the CPU, sized to free memory "
        "(at most 512) on CUDA",
    )
    inference_cpu_bf16: bool = Field(
        True,
        description="bf16 autocast for inference on CPUs with AVX512-BF16 or AMX (fp32 on "
        "others); false: fp32 everywhere",
    )
    default_threshold: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="defect probability threshold; unset: each model's operating threshold",
    )
    blob_chunk_bytes: int = Field(1 << 20, description="chunk size of stored files")
    job_max_attempts: int = Field(
        3,
        description="a training job is failed after this many starts that died (a worker "
        "killed or crashed); a clean stop hands the job back and does not count",
    )
    job_lease_s: float = Field(120.0, description="a running job whose heartbeat is older is stale")
    worker_stop_grace_s: float = Field(
        30.0,
        ge=0.0,
        description="on a stop, a running epoch may finish within this less 10 s, else the job "
        "stops at its next step and resumes from its last epoch; serve kills its embedded "
        "worker after it",
    )
    worker_presence_ttl_s: float = Field(
        15.0,
        gt=0.0,
        description="a worker that has not renewed its presence row for this long counts as "
        "dead (/readyz, /metrics)",
    )
    job_requeue_s: float = Field(
        1800.0,
        description="a job still queued this long after it was sent is sent again (a message "
        "the broker lost); a duplicate is harmless, as claiming a job is atomic",
    )
    job_soft_time_limit_s: int = Field(
        48 * 3600, description="soft time limit of one training task"
    )
    worker_max_tasks_per_child: int = Field(
        1, description="tasks a worker process runs before it is replaced"
    )
    max_json_kb: int = Field(
        256,
        ge=1,
        le=65536,
        description="largest accepted JSON body, in KiB, refused while it streams in (a "
        "training job is a few hundred bytes, 1,000 labels under 150 KiB)",
    )
    public_url: str | None = Field(
        None,
        description="the absolute URL clients reach the API at (e.g. https://cracks.example.org): "
        "links in answers start with it; unset: links are paths on the server that answered",
    )

    @model_validator(mode="after")
    def _refuse_development_switches_in_production(self) -> Settings:
        if self.environment == "production" and self.auth_disabled:
            raise ValueError(
                "CRACKSCAN_AUTH_DISABLED is a development setting; refused in production"
            )
        return self

    @field_validator("public_url")
    @classmethod
    def _absolute_http_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
            raise ValueError(f"CRACKSCAN_PUBLIC_URL must be an http(s) URL, got {value!r}")
        return value.rstrip("/")

    @property
    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'crackscan.db').resolve()}"

    @property
    def embedded_broker(self) -> bool:
        return not self.broker_url

    @property
    def broker_folder(self) -> Path:
        return (self.data_dir / "broker").resolve()


@lru_cache
def get_settings() -> Settings:
    return Settings()


def settings_markdown() -> str:
    """The Configuration table of the README, generated from Settings."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = field.default
        shown = "(unset)" if default is None else str(default)
        rows.append(f"| `CRACKSCAN_{name.upper()}` | `{shown}` | {field.description or ''} |")
    return "\n".join(rows)
