"""What a checkpoint must hold to be mapped with: checked when it is loaded, so an odd file
is refused on import (and by the CLI) instead of failing inspections later."""

from __future__ import annotations

import math
from typing import Any

import torch

from models.backbones import BACKBONES, build_classifier
from models.data.class_names import check_class_names

MIN_INPUT_SIZE = 16
MAX_INPUT_SIZE = 1024  # the largest image_size a training job takes
MIN_TILE_PX, MAX_TILE_PX = 8, 4096  # what an inspection's tile may be


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def checkpoint_problems(ckpt: Any) -> list[str]:
    """Why the checkpoint cannot be mapped with (empty when it can). `ckpt` is a
    models.checkpoint.Checkpoint; its weights are compared with its backbone's, key by
    key and shape by shape, on the meta device (nothing is allocated)."""
    problems: list[str] = []
    if ckpt.backbone not in BACKBONES:
        problems.append(f"backbone {ckpt.backbone!r} is not one of {', '.join(BACKBONES)}")
    classes = ckpt.classes
    if (
        not isinstance(classes, list)
        or len(classes) < 2
        or len(set(map(str, classes))) != len(classes)
    ):
        problems.append(f"classes must be at least two distinct names, got {str(classes)[:200]}")
    else:
        try:
            check_class_names(classes, "classes")
        except ValueError as exc:
            problems.append(str(exc))
    if not isinstance(ckpt.defect_classes, list) or not set(ckpt.defect_classes) <= set(classes):
        problems.append(
            f"defect classes {str(ckpt.defect_classes)[:200]} are not among its classes"
        )
    if not MIN_INPUT_SIZE <= ckpt.input_size <= MAX_INPUT_SIZE:
        problems.append(
            f"input size {ckpt.input_size} is outside {MIN_INPUT_SIZE}..{MAX_INPUT_SIZE} px"
        )
    if ckpt.tile_px is not None and not MIN_TILE_PX <= ckpt.tile_px <= MAX_TILE_PX:
        problems.append(f"tile_px {ckpt.tile_px} is outside {MIN_TILE_PX}..{MAX_TILE_PX} px")
    if not _finite(ckpt.temperature) or ckpt.temperature <= 0:
        problems.append(f"temperature must be a finite number > 0, got {ckpt.temperature}")
    if ckpt.threshold is not None and not (_finite(ckpt.threshold) and 0 <= ckpt.threshold <= 1):
        problems.append(f"threshold must be a finite number in [0, 1], got {ckpt.threshold}")
    for name, values in (("mean", ckpt.mean), ("std", ckpt.std)):
        if len(values) != 3 or not all(_finite(v) for v in values):
            problems.append(f"{name} must be 3 finite numbers, got {str(values)[:100]}")
    if len(ckpt.std) == 3 and not all(_finite(v) and v > 0 for v in ckpt.std):
        problems.append(f"std must be > 0, got {ckpt.std}")
    if not problems:
        problems += _weight_problems(ckpt.backbone, len(classes), ckpt.model_state)
    return problems


def _weight_problems(backbone: str, classes: int, state: Any) -> list[str]:
    """The weights against the backbone's: the same keys, each of the same shape."""
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        return ["model_state is not a dict of tensors"]
    with torch.device("meta"):
        expected = {k: v.shape for k, v in build_classifier(backbone, classes).state_dict().items()}
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if state[k].shape != expected[k])
    problems = []
    if missing or extra:
        problems.append(
            f"its weights do not fit a {backbone} with {classes} classes: "
            f"{len(missing)} missing (e.g. {missing[:2]}), {len(extra)} unexpected "
            f"(e.g. {extra[:2]})"
        )
    if wrong:
        key = wrong[0]
        problems.append(
            f"its weights do not fit a {backbone} with {classes} classes: {len(wrong)} of "
            f"another shape, e.g. {key} is {tuple(state[key].shape)}, not {tuple(expected[key])}"
        )
    return problems
