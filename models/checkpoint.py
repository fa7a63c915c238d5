"""The checkpoint format: one file, loadable with torch.load(weights_only=True).

A checkpoint is a dict of plain values and tensors (no pickled code):
  format, format_version, backbone, classes, defect_classes, input_size, mean, std,
  temperature, model_state, estimator_state, config, metrics, history,
  training_state (for resuming: optimizer, epoch, RNG, best weights; None when final),
  threshold (the operating defect threshold chosen on validation, or None: 0.5),
  tile_px (the tile side in photo pixels of a model trained on masks, or None),
  content_hash: sha256 of the weights and of everything inference depends on.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import torch

from models.backbones import Classifier, build_classifier
from models.checkpoint_checks import checkpoint_problems
from models.threshold import DEFAULT_THRESHOLD

FORMAT = "crackscan.checkpoint"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """The file is not a crackscan checkpoint, or is damaged."""


@dataclass
class Checkpoint:
    backbone: str
    classes: list[str]
    defect_classes: list[str]
    input_size: int
    mean: list[float]
    std: list[float]
    model_state: dict[str, torch.Tensor]
    temperature: float = 1.0
    estimator_state: dict[str, torch.Tensor] | None = None
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    training_state: dict[str, Any] | None = None
    content_hash: str = ""
    threshold: float | None = None  # the operating defect threshold, chosen on validation
    tile_px: int | None = None  # the tile side in photo pixels it was trained on (masks sets)

    @property
    def operating_threshold(self) -> float:
        """The defect threshold maps use by default: the chosen one, else 0.5."""
        return DEFAULT_THRESHOLD if self.threshold is None else float(self.threshold)

    def compute_hash(self) -> str:
        """sha256 over the weights and the inference metadata (not metrics or history)."""
        digest = hashlib.sha256()
        meta = {
            "backbone": self.backbone,
            "classes": self.classes,
            "defect_classes": self.defect_classes,
            "input_size": self.input_size,
            "mean": [float(v) for v in self.mean],
            "std": [float(v) for v in self.std],
            "temperature": float(self.temperature),
        }
        # Added in later versions: hashed only when set, so older checkpoints keep their hash.
        if self.threshold is not None:
            meta["threshold"] = float(self.threshold)
        if self.tile_px is not None:
            meta["tile_px"] = int(self.tile_px)
        digest.update(json.dumps(meta, sort_keys=True).encode())
        for key in sorted(self.model_state):
            tensor = self.model_state[key].detach().cpu().contiguous()
            digest.update(key.encode())
            digest.update(str(tensor.dtype).encode() + str(tuple(tensor.shape)).encode())
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
        return digest.hexdigest()

    def to_payload(self) -> dict[str, Any]:
        self.content_hash = self.compute_hash()
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "backbone": self.backbone,
            "classes": list(self.classes),
            "defect_classes": list(self.defect_classes),
            "input_size": int(self.input_size),
            "mean": [float(v) for v in self.mean],
            "std": [float(v) for v in self.std],
            "temperature": float(self.temperature),
            "model_state": {k: v.detach().cpu() for k, v in self.model_state.items()},
            "estimator_state": None
            if self.estimator_state is None
            else {k: v.detach().cpu() for k, v in self.estimator_state.items()},
            "config": self.config,
            "metrics": self.metrics,
            "history": self.history,
            "training_state": self.training_state,
            "content_hash": self.content_hash,
            "threshold": None if self.threshold is None else float(self.threshold),
            "tile_px": None if self.tile_px is None else int(self.tile_px),
        }

    def build_model(self, device: torch.device | str = "cpu") -> Classifier:
        """The classifier with these weights, in eval mode."""
        model = build_classifier(self.backbone, len(self.classes))
        model.load_state_dict(self.model_state)
        return model.to(device).eval()


def to_bytes(checkpoint: Checkpoint) -> bytes:
    buffer = io.BytesIO()
    torch.save(checkpoint.to_payload(), buffer)
    return buffer.getvalue()


def save_checkpoint(checkpoint: Checkpoint, path: str | Path) -> str:
    """Write atomically (temp file + rename); return the content hash."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    payload = checkpoint.to_payload()
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(payload, handle)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return checkpoint.content_hash


def load_checkpoint(source: str | Path | bytes | IO[bytes], verify: bool = True) -> Checkpoint:
    """Read a checkpoint with weights_only=True; CheckpointError when it is not one."""
    name = str(source) if isinstance(source, str | Path) else "<bytes>"
    handle: Any = io.BytesIO(source) if isinstance(source, bytes) else source
    if isinstance(source, str | Path) and not Path(source).is_file():
        raise FileNotFoundError(f"no such checkpoint: {source}")
    try:
        payload = torch.load(handle, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and torch errors alike
        raise CheckpointError(f"{name} is not a crackscan checkpoint: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{name} is not a crackscan checkpoint (no '{FORMAT}' marker)")
    version = payload.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{name} has format version {version}; this crackscan reads {FORMAT_VERSION}"
        )
    try:
        ckpt = Checkpoint(
            backbone=payload["backbone"],
            classes=list(payload["classes"]),
            defect_classes=list(payload["defect_classes"]),
            input_size=int(payload["input_size"]),
            mean=list(payload["mean"]),
            std=list(payload["std"]),
            model_state=payload["model_state"],
            temperature=float(payload["temperature"]),
            estimator_state=payload.get("estimator_state"),
            config=payload.get("config") or {},
            metrics=payload.get("metrics") or {},
            history=payload.get("history") or [],
            training_state=payload.get("training_state"),
            content_hash=payload.get("content_hash", ""),
            threshold=None if payload.get("threshold") is None else float(payload["threshold"]),
            tile_px=None if payload.get("tile_px") is None else int(payload["tile_px"]),
        )
    except (KeyError, TypeError) as exc:
        raise CheckpointError(f"{name} is a damaged crackscan checkpoint: missing {exc}") from exc
    except (ValueError, OverflowError) as exc:  # int(nan), int('x'), float('x')
        raise CheckpointError(f"{name} is a damaged crackscan checkpoint: {exc}") from exc
    problems = checkpoint_problems(ckpt)
    if problems:
        raise CheckpointError(f"{name} cannot be used: " + "; ".join(problems))
    if verify and ckpt.compute_hash() != ckpt.content_hash:
        raise CheckpointError(f"{name} is damaged: its content hash does not match its weights")
    return ckpt
