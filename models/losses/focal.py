"""Focal loss, the multi-class form of Lin et al. (2017)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from models.losses._checks import check_logits, check_reduction, loss_dtype, reduce


def focal_loss(
    logits: torch.Tensor, labels: torch.Tensor, gamma: float = 2.0, reduction: str = "mean"
) -> torch.Tensor:
    """Focal loss L = −(1 − p_t)^γ · log p_t.

    Args:
        logits: (N, C) class scores.
        labels: (N,) int64 true classes.
        gamma: focusing parameter γ >= 0 (γ = 0 gives cross-entropy).
        reduction: "mean", "sum" or "none" (then shape (N,)).
    """
    check_logits(logits, labels)
    check_reduction(reduction)
    if not math.isfinite(gamma) or gamma < 0:
        raise ValueError(f"gamma must be a finite number >= 0, got {gamma!r}")
    z = logits.to(loss_dtype(logits))
    log_pt = F.log_softmax(z, dim=1).gather(1, labels.unsqueeze(1)).squeeze(1)
    # (1 − p_t) computed as −expm1(log p_t) keeps precision when p_t is close to 1.
    loss = -torch.pow(-torch.expm1(log_pt), gamma) * log_pt
    return reduce(loss, reduction)


class FocalLoss(nn.Module):
    """Module form of :func:`focal_loss` on logits."""

    def __init__(self, gamma: float = 2.0) -> None:
        super().__init__()
        self.gamma = gamma

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return focal_loss(logits, labels, self.gamma)
