"""ISDA: implicit semantic data augmentation (Wang et al., TPAMI 2022), IGMSDA.md "ISDA"."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from models.losses._checks import check_lam, check_linear, check_reduction, loss_dtype, reduce
from models.losses.augmented import AugmentedLoss
from models.losses.covariance import class_pair_quadratic


def augmented_margins(
    features: torch.Tensor,
    labels: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    class_cov: torch.Tensor,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Margins m_j = z_j − z_y and the half-variances (λ/2) q_j shared by ISDA and IGMSDA.

    Args:
        features: (N, F).  labels: (N,).  weight: (C, F).  bias: (C,) or None.
        class_cov: (C, F, F) or (C, F).  lam: λ >= 0.

    Returns:
        (margins, half_var), each (N, C); both are 0 in column y.
    """
    dtype = loss_dtype(features, weight)
    weight = weight.to(dtype)
    logits = nn.functional.linear(
        features.to(dtype), weight, None if bias is None else bias.to(dtype)
    )
    margins = logits - logits.gather(1, labels.unsqueeze(1))
    half_var = (0.5 * lam) * class_pair_quadratic(weight, class_cov)[labels]
    return margins, half_var


def isda_loss(
    features: torch.Tensor,
    labels: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    class_cov: torch.Tensor,
    lam: float,
    reduction: str = "mean",
) -> torch.Tensor:
    """ISDA bound on the expected cross-entropy over ã ~ N(a, λ Σ_y).

        L_ISDA = log Σ_j exp(z_j − z_y + (λ/2) q_j),  q_j = (w_j − w_y)ᵀ Σ_y (w_j − w_y)

    Computed in float32 (or float64) even for half-precision inputs.

    Args:
        features: (N, F) features a_i = M_e(x_i).
        labels: (N,) int64 true classes y_i.
        weight: (C, F) classifier weights W.
        bias: (C,) classifier bias b, or None.
        class_cov: (C, F, F) class covariances Σ_c, or (C, F) diagonal; no gradient.
        lam: augmentation strength λ >= 0 (λ = 0 gives cross-entropy).
        reduction: "mean", "sum" or "none" (then shape (N,)).
    """
    check_linear(features, labels, weight, bias, class_cov)
    check_lam(lam)
    check_reduction(reduction)
    with torch.autocast(features.device.type, enabled=False):
        margins, half_var = augmented_margins(features, labels, weight, bias, class_cov, lam)
        loss = torch.logsumexp(margins + half_var, dim=1)
    return reduce(loss, reduction)


class ISDALoss(AugmentedLoss):
    """ISDA loss with its own covariance estimator and the schedule λ = (t/T)·λ0.

    Each call first folds the batch's detached features into the estimator,
    then evaluates :func:`isda_loss` with the updated covariance.
    """

    def __init__(
        self, num_classes: int, feature_dim: int, lam0: float = 0.5, diagonal: bool = False
    ) -> None:
        super().__init__(num_classes, feature_dim, lam0, None, diagonal)

    def augmented_loss(self, *args: Any) -> torch.Tensor:
        """:func:`isda_loss`; α (the last argument) is not used."""
        return isda_loss(*args[:-1])
