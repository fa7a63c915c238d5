"""AdaBN: a network's BatchNorm statistics re-estimated on a target domain's inputs.

Li et al., "Revisiting batch normalization for practical domain adaptation" (2016). Each
BatchNorm layer normalises with running estimates (μ_s, σ²_s) of the training domain. On a
survey they are replaced, or blended with weight β, by the same statistics of the survey's
tiles:

    μ ← (1 − β) μ_s + β μ_t,    σ² ← (1 − β) σ²_s + β σ²_t

where μ_t, σ²_t are the exact averages over the given tiles (cumulative, not a moving
average). β = 1 is AdaBN; β = 0 leaves the model unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

from models.data import normalise

BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


@torch.no_grad()
def reestimate_batchnorm(
    model: nn.Module,
    tiles: torch.Tensor,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    blend: float = 1.0,
    batch_size: int = 128,
) -> int:
    """Blend every BatchNorm layer's running statistics towards those of `tiles`, in place.

    Args:
        model: a network in any mode; it is left in eval mode.
        tiles: (N, 3, S, S) uint8 target-domain inputs.
        mean, std: the model's input normalisation.
        blend: β in [0, 1] (module docstring).
        batch_size: tiles per forward pass; only the statistics are kept.

    Returns:
        The number of BatchNorm layers changed (0: the network has none).
    """
    if not 0.0 <= blend <= 1.0:
        raise ValueError(f"blend must lie in [0, 1], got {blend}")
    layers = [m for m in model.modules() if isinstance(m, BATCHNORMS) and m.track_running_stats]
    if not layers or blend == 0.0 or tiles.shape[0] == 0:
        model.eval()
        return 0
    device = next(model.parameters()).device
    source = []
    for m in layers:
        assert m.running_mean is not None and m.running_var is not None  # tracked stats
        source.append((m.running_mean.clone(), m.running_var.clone(), m.momentum))
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over every batch
    model.train()
    for start in range(0, tiles.shape[0], batch_size):
        batch = tiles[start : start + batch_size]
        if batch.shape[0] < 2 and start > 0:
            break  # a single-tile batch has no variance; the others have seen enough
        model(normalise(batch.to(device), mean, std).contiguous(memory_format=torch.channels_last))
    for m, (mu, var, momentum) in zip(layers, source, strict=True):
        assert m.running_mean is not None and m.running_var is not None
        m.running_mean.mul_(blend).add_((1.0 - blend) * mu)
        m.running_var.mul_(blend).add_((1.0 - blend) * var)
        m.momentum = momentum
    model.eval()
    return len(layers)
