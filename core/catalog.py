"""The model catalogue: rows for stored checkpoints, and which one is active."""

from __future__ import annotations

import json
from typing import Any, Protocol

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core.errors import NotFound
from core.tables import NetworkModel


def _json_safe(value: object) -> dict[str, Any]:
    return dict(json.loads(json.dumps(value, default=str))) if isinstance(value, dict) else {}


class CheckpointFacts(Protocol):
    """What a models row records of a checkpoint (models.checkpoint.Checkpoint has it)."""

    backbone: str
    classes: list[str]
    defect_classes: list[str]
    input_size: int
    temperature: float
    metrics: dict[str, Any]
    config: dict[str, Any]

    @property
    def content_hash(self) -> str: ...


def model_row(ckpt: CheckpointFacts, blob_id: str, name: str, **extra: Any) -> NetworkModel:
    """A models row for a checkpoint."""
    return NetworkModel(
        name=name,
        backbone=ckpt.backbone,
        classes=list(ckpt.classes),
        defect_classes=list(ckpt.defect_classes),
        input_size=int(ckpt.input_size),
        temperature=float(ckpt.temperature),
        content_hash=ckpt.content_hash,
        blob_id=blob_id,
        metrics=_json_safe(ckpt.metrics),
        config=_json_safe(ckpt.config),
        **extra,
    )


def activate(session: Session, model_id: str) -> NetworkModel:
    """Make one model the active one (the default for inspections).

    Activations take the catalogue's row locks first, in id order, so parallel ones run one
    after the other: each unsets the active model the one before it set (taken in any
    other order, two activations deadlocked, or both saw the same model active and the
    second broke the one-active-model index). SQLite writes one transaction at a time.
    """
    session.execute(select(NetworkModel.id).order_by(NetworkModel.id).with_for_update())
    row = session.get(NetworkModel, model_id, populate_existing=True)
    if row is None:
        raise NotFound(f"no model {model_id}")
    session.execute(
        update(NetworkModel).where(NetworkModel.is_active.is_(True)).values(is_active=False)
    )
    row.is_active = True
    session.flush()
    return row


def active_model(session: Session) -> NetworkModel | None:
    return session.scalar(select(NetworkModel).where(NetworkModel.is_active.is_(True)))


def val_macro_f1(row: NetworkModel | None) -> float:
    """The validation macro F recorded with a model (-1 when unknown)."""
    if row is None:
        return -1.0
    try:
        return float(row.metrics["val"]["macro_f1"])
    except (KeyError, TypeError, ValueError):
        return -1.0
