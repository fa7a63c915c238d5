"""IGMSDA, exact: the expected GM loss over the augmented logits (IGMSDA.md, "The exact expectation")."""

from __future__ import annotations

import functools
import math
from typing import Any

import torch
import torch.nn.functional as F

from models.losses._checks import (
    check_augmented,
    loss_dtype,
    reduce,
)
from models.losses.augmented import AugmentedLoss
from models.losses.covariance import class_pair_covariance
from models.losses.gaussian import gaussian_factor, gaussian_rule
from models.losses.gm import gm_of_nll


@functools.cache
def _other_classes(num_classes: int, device: str) -> torch.Tensor:
    """(C, C−1) int64: row y lists the classes j ≠ y in increasing order."""
    idx = torch.arange(num_classes)
    rows = [torch.cat([idx[:y], idx[y + 1 :]]) for y in range(num_classes)]
    return torch.stack(rows).to(device)


def margin_factors(weight: torch.Tensor, class_cov: torch.Tensor) -> torch.Tensor:
    """Factors A_y with A_y A_yᵀ = D_y Σ_y D_yᵀ, D_y the rows w_j − w_y for j ≠ y.

    λ A_y A_yᵀ is the covariance of the margins (z̃_j − z̃_y)_{j≠y}; for C = 2 the
    factor is the scalar √q.

    Args:
        weight: (C, F) in the loss dtype (gradients flow through the factor into W).
        class_cov: (C, F, F) or (C, F) diagonal; no gradient.

    Returns:
        (C, C−1, C−1) lower factors, indexed [true class y].
    """
    num_classes = weight.shape[0]
    others = _other_classes(num_classes, str(weight.device))  # (C, C−1)
    table = class_pair_covariance(weight, class_cov)  # (C, C, C)
    rows = torch.arange(num_classes, device=weight.device).view(-1, 1, 1)
    sub = table[rows, others.unsqueeze(2), others.unsqueeze(1)]  # (C, C−1, C−1)
    return gaussian_factor(sub)


def gm_expected_loss(
    features: torch.Tensor,
    labels: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    class_cov: torch.Tensor,
    lam: float,
    alpha: float,
    reduction: str = "mean",
) -> torch.Tensor:
    """The expected GM loss over ã ~ N(a, λ Σ_y), computed by quadrature, with no bound.

    The augmented logits are exactly Gaussian, z̃ = W ã + b ~ N(z, λ W Σ_y Wᵀ), and
    L_g depends on them only through the C−1 margins Δ_j = z̃_j − z̃_y (j ≠ y):

        Δ ~ N(m, λ A_y A_yᵀ),   m_j = z_j − z_y,   A_y A_yᵀ = D_y Σ_y D_yᵀ
        −log p_t(Δ) = log(1 + Σ_{j≠y} exp Δ_j)
        L = E[L_g] ≈ Σ_k ω_k · L_g(m + √λ A_y u_k)

    with the fixed rule (u_k, ω_k) of :func:`gaussian_rule` in C−1 dimensions:
    64-node Gauss–Hermite for C = 2, its 64 x 64 tensor product for C = 3, and
    antithetic scrambled-Sobol points beyond. At λ = 0 it is the GM loss itself.
    Computed in float32 (or float64) even for half-precision inputs.

    Args: as :func:`models.losses.igmsda_loss` (features (N, F), labels (N,), weight
        (C, F), bias (C,) or None, class_cov (C, F, F) or (C, F), λ >= 0, α > 0, and
        reduction "mean", "sum" or "none", then shape (N,)); the bound and this
        expectation take the same arguments.
    """
    num_classes = check_augmented(features, labels, weight, bias, class_cov, lam, alpha, reduction)
    with torch.autocast(features.device.type, enabled=False):
        dtype = loss_dtype(features, weight)
        weight = weight.to(dtype)
        logits = F.linear(features.to(dtype), weight, None if bias is None else bias.to(dtype))
        others = _other_classes(num_classes, str(logits.device))[labels]  # (N, C−1)
        mean = logits.gather(1, others) - logits.gather(1, labels.unsqueeze(1))  # (N, C−1)
        if lam == 0:
            margins = mean.unsqueeze(1)  # (N, 1, C−1): a point mass
            weights = torch.ones(1, dtype=dtype, device=logits.device)
        else:
            factors = margin_factors(weight, class_cov)[labels] * math.sqrt(lam)  # (N, d, d)
            points, weights = gaussian_rule(num_classes - 1, dtype, logits.device)  # (K, d)
            margins = mean.unsqueeze(1) + torch.matmul(points, factors.transpose(1, 2))
        zero = margins.new_zeros(margins.shape[:-1] + (1,))
        nll = torch.logsumexp(torch.cat([zero, margins], -1), -1)  # (N, K): −log p_t
        loss = gm_of_nll(nll, math.log(alpha)) @ weights
    return reduce(loss, reduction)


class IGMSDAExactLoss(AugmentedLoss):
    """``igmsda-exact``: :func:`gm_expected_loss` with the estimator and schedules of IGMSDA."""

    def augmented_loss(self, *args: Any) -> torch.Tensor:
        """:func:`gm_expected_loss`."""
        return gm_expected_loss(*args)
