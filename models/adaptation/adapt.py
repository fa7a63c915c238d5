"""adapt(): a model for a survey made from the survey's own unlabelled photos.

Methods (ADAPT_METHODS); which one helps on surveys no model was trained on is for the
new-survey bench of issue #26 to decide, which has not run yet:

- ``adabn``: BatchNorm statistics re-estimated on the survey's tiles (models.adaptation.
  batchnorm); the threshold is kept.
- ``prior``: the weights are kept; the survey's crack prior is estimated by EM from the
  calibrated probabilities (models.adaptation.prior.em_prior) and the threshold moves to the
  one that maximises the F1 the model expects under that prior.
- ``adabn+prior``: both.
- ``adabn+rate``: AdaBN, then the threshold that flags the same share of the survey's
  tiles as the base model did.

Every result records what was done, on how many tiles of how many photos, in its
checkpoint's metrics["adaptation"].
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from models.adaptation.batchnorm import reestimate_batchnorm
from models.adaptation.prior import em_prior, expected_f1_threshold, rate_matched_threshold
from models.adaptation.tiles import PhotoSource, survey_tiles
from models.checkpoint import Checkpoint
from models.device import select_device
from models.training.steps import predict_logits

ADAPT_METHODS = ("adabn", "prior", "adabn+prior", "adabn+rate")


@dataclass
class AdaptConfig:
    """How to adapt (the default method is provisional until the new-survey bench runs)."""

    method: str = "adabn+prior"
    max_tiles: int = 20000  # survey tiles drawn for the statistics
    blend: float = 1.0  # β of AdaBN: 1 replaces the statistics, 0 keeps them
    seed: int = 0
    batch_size: int = 128
    device: str = "auto"
    cpu_bf16: bool = True

    def __post_init__(self) -> None:
        if self.method not in ADAPT_METHODS:
            raise ValueError(f"method must be one of {ADAPT_METHODS}, got {self.method!r}")
        if self.max_tiles < 1 or self.batch_size < 2:
            raise ValueError("max_tiles must be >= 1 and batch_size >= 2")
        if not 0.0 <= self.blend <= 1.0:
            raise ValueError(f"blend must lie in [0, 1], got {self.blend}")


@dataclass
class AdaptResult:
    checkpoint: Checkpoint
    report: dict[str, Any]


def source_prior(checkpoint: Checkpoint) -> torch.Tensor:
    """(C,) the class shares the checkpoint was calibrated under: its validation split's
    counts when its metrics hold them, else uniform."""
    counts = (checkpoint.metrics.get("data") or {}).get("counts", {}).get("val")
    if isinstance(counts, dict) and all(counts.get(c, 0) > 0 for c in checkpoint.classes):
        values = torch.tensor([float(counts[c]) for c in checkpoint.classes], dtype=torch.float64)
        return values / values.sum()
    return torch.full(
        (len(checkpoint.classes),), 1.0 / len(checkpoint.classes), dtype=torch.float64
    )


def calibrated_probs(
    checkpoint: Checkpoint, model: torch.nn.Module, tiles: torch.Tensor, config: AdaptConfig
) -> torch.Tensor:
    """(N, C) float64 softmax(z / T) of `model` (the checkpoint's normalisation)."""
    device = next(model.parameters()).device
    logits = predict_logits(
        model,  # type: ignore[arg-type]
        tiles,
        device,
        config.batch_size,
        config.cpu_bf16,
        tuple(checkpoint.mean),
        tuple(checkpoint.std),
    )
    return torch.softmax(logits.double() / checkpoint.temperature, 1)


def defect_share(probs: torch.Tensor, checkpoint: Checkpoint) -> torch.Tensor:
    index = [checkpoint.classes.index(c) for c in checkpoint.defect_classes]
    return probs[:, index].sum(1)


def adapt(
    checkpoint: Checkpoint, photos: Sequence[PhotoSource], config: AdaptConfig | None = None
) -> AdaptResult:
    """A copy of `checkpoint` adapted to the survey the photos come from (module docstring).

    Args:
        checkpoint: the base model (final, not a resumable snapshot).
        photos: the survey's RGB photos, EXIF-oriented, or callables that decode one
            (decoded one at a time: models.adaptation.tiles.survey_tiles).
        config: the method and its settings.
    """
    config = config or AdaptConfig()
    device = select_device(config.device)
    tiles = survey_tiles(photos, checkpoint, config.max_tiles, config.seed)
    model = checkpoint.build_model(device).to(memory_format=torch.channels_last)
    base_score = defect_share(calibrated_probs(checkpoint, model, tiles, config), checkpoint)
    base_threshold = checkpoint.operating_threshold
    base_rate = float((base_score >= base_threshold).double().mean())
    report: dict[str, Any] = {
        "method": config.method,
        "photos": len(photos),
        "tiles": int(tiles.shape[0]),
        "base_content_hash": checkpoint.content_hash,
        "base_threshold": base_threshold,
        "base_flagged_share": base_rate,
    }
    if "adabn" in config.method:
        layers = reestimate_batchnorm(
            model, tiles, tuple(checkpoint.mean), tuple(checkpoint.std), config.blend
        )
        report |= {"batchnorm_layers": layers, "blend": config.blend}
    probs = calibrated_probs(checkpoint, model, tiles, config)
    score = defect_share(probs, checkpoint)
    threshold = base_threshold
    if config.method.endswith("prior"):
        prior_s = source_prior(checkpoint)
        prior_t, adjusted = em_prior(probs, prior_s)
        # The best cut under the survey's prior, as the share of tiles it flags, moved onto
        # the scores maps show (calibrated under the training prior): the same tiles.
        cut = expected_f1_threshold(defect_share(adjusted, checkpoint))
        share = float((defect_share(adjusted, checkpoint) >= cut).double().mean())
        threshold = rate_matched_threshold(score, share)
        report |= {
            "source_prior": prior_s.tolist(),
            "survey_prior": prior_t.tolist(),
            "expected_f1_cut": cut,
        }
    elif config.method.endswith("rate"):
        threshold = rate_matched_threshold(score, base_rate)
    threshold = min(1.0, max(0.0, threshold))
    report |= {
        "threshold": threshold,
        "flagged_share": float((score >= threshold).double().mean()),
    }
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    metrics = {**copy.deepcopy(checkpoint.metrics), "adaptation": report}
    adapted = dataclasses.replace(
        checkpoint,
        model_state=state,
        threshold=threshold,
        metrics=metrics,
        training_state=None,
        content_hash="",
    )
    adapted.content_hash = adapted.compute_hash()
    return AdaptResult(adapted, report)
