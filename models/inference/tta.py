"""Test-time augmentation: a tile's probabilities averaged over flipped and rotated copies.

With calibrated probabilities p(y | x) = softmax(z(x) / T), a map with TTA over the views
G (a subgroup of the square's symmetries D4) gives each tile

    p_TTA(y | x) = (1 / |G|) Σ_{g ∈ G} p(y | g·x)

- ``none``: G = {identity}: the plain map.
- ``flip``: G = {identity, left-right mirror}: 2 forward passes per tile.
- ``d4``: the 8 symmetries of the square (4 rotations, each mirrored or not): 8 passes.

Cracks have no preferred side or orientation, so a model that is not exactly invariant
to these views still predicts each of them; averaging removes the part of its error that
depends on the view. A model that is invariant gets exactly its plain map back.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

TTA_MODES = ("none", "flip", "d4")
VIEWS_PER_TILE = {"none": 1, "flip": 2, "d4": 8}


def check_tta(mode: str) -> str:
    """The mode, or ValueError naming the allowed ones."""
    if mode not in TTA_MODES:
        raise ValueError(f"tta must be one of {', '.join(TTA_MODES)}, got {mode!r}")
    return mode


def views(batch: torch.Tensor, mode: str) -> list[torch.Tensor]:
    """The copies of a (B, 3, S, S) batch of square tiles that `mode` averages over
    (the identity first); each is (B, 3, S, S)."""
    check_tta(mode)
    if batch.shape[-1] != batch.shape[-2] and mode == "d4":
        raise ValueError(f"d4 needs square tiles, got {tuple(batch.shape[-2:])}")
    if mode == "none":
        return [batch]
    mirrored = batch.flip(-1)
    if mode == "flip":
        return [batch, mirrored]
    out = []
    for base in (batch, mirrored):
        out += [torch.rot90(base, k, dims=(-2, -1)) for k in range(4)]
    return out


def averaged(
    probabilities: Callable[[torch.Tensor], torch.Tensor], batch: torch.Tensor, mode: str
) -> torch.Tensor:
    """(B, C) p_TTA of the module docstring: the mean of probabilities(view) over the views.

    Args:
        probabilities: (B, 3, S, S) uint8 tiles -> (B, C) calibrated probabilities.
        batch: (B, 3, S, S) uint8 tiles.
        mode: one of TTA_MODES.
    """
    copies = views(batch, mode)
    if len(copies) == 1:
        return probabilities(batch)
    total = probabilities(copies[0]).float()
    for copy in copies[1:]:
        total = total + probabilities(copy).float()
    return total / len(copies)
