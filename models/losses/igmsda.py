"""IGMSDA: implicit gradient-modulated semantic data augmentation (IGMSDA.md, the closed form)."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from models.losses._checks import (
    check_augmented,
    reduce,
)
from models.losses.augmented import AugmentedLoss
from models.losses.isda import augmented_margins


def igmsda_loss(
    features: torch.Tensor,
    labels: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    class_cov: torch.Tensor,
    lam: float,
    alpha: float,
    reduction: str = "mean",
) -> torch.Tensor:
    """Closed-form upper bound of the expected GM loss over ã ~ N(a, λ Σ_y).

        L = −½ log α
            + log Σ_j exp(z_j − z_y + (λ/2) q_j)                       (Part I = ISDA)
            + ½ log(1 + (α / C²) Σ_j exp(z_y − z_j + (λ/2) q_j))       (Part II)

    with q_j = (w_j − w_y)ᵀ Σ_y (w_j − w_y); j runs over all C classes, y
    included. Part II is evaluated as ½ softplus(log α − 2 log C + logsumexp(...)),
    which stays finite for any margin. Computed in float32 (or float64).

    Args:
        features: (N, F) features a_i.
        labels: (N,) int64 true classes y_i.
        weight: (C, F) classifier weights W.
        bias: (C,) or None.
        class_cov: (C, F, F) or (C, F) diagonal class covariances; no gradient.
        lam: augmentation strength λ >= 0.
        alpha: modulation α > 0.
        reduction: "mean", "sum" or "none" (then shape (N,)).
    """
    num_classes = check_augmented(features, labels, weight, bias, class_cov, lam, alpha, reduction)
    log_alpha = math.log(alpha)
    with torch.autocast(features.device.type, enabled=False):
        margins, half_var = augmented_margins(features, labels, weight, bias, class_cov, lam)
        part1 = torch.logsumexp(margins + half_var, dim=1)
        inner = torch.logsumexp(half_var - margins, dim=1)
        part2 = 0.5 * F.softplus(log_alpha - 2.0 * math.log(num_classes) + inner)
        loss = part1 + part2 - 0.5 * log_alpha
    return reduce(loss, reduction)


class IGMSDALoss(AugmentedLoss):
    """IGMSDA loss with its covariance estimator and the schedules λ = (t/T)·λ0, α = (t/T)·α0 + 1."""

    def augmented_loss(self, *args: Any) -> torch.Tensor:
        """:func:`igmsda_loss`."""
        return igmsda_loss(*args)
