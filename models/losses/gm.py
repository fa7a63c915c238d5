"""The gradient-modulated (GM) loss: exact on logits, and explicitly sampled over augmented logits."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from models.losses._checks import (
    check_alpha,
    check_augmented,
    check_logits,
    check_reduction,
    loss_dtype,
    reduce,
)
from models.losses.augmented import AugmentedLoss
from models.losses.covariance import class_logit_covariance
from models.losses.gaussian import gaussian_factor

# Bound on N·S·C noise values drawn at once by gm_sampled_loss (about 64 MB in float32).
_SAMPLE_CHUNK_ELEMENTS = 1 << 24


def gm_of_nll(nll: torch.Tensor, log_alpha: float) -> torch.Tensor:
    """L_g as a function of −log p_t: −log p_t − ½ log α + ½ softplus(log α + log p_t)."""
    return nll - 0.5 * log_alpha + 0.5 * F.softplus(log_alpha - nll)


def _gm_from_logits(logits: torch.Tensor, labels: torch.Tensor, log_alpha: float) -> torch.Tensor:
    """L_g = −log p_t − ½ log α + ½ log(α p_t + 1) for (M, C) logits; returns (M,)."""
    log_pt = F.log_softmax(logits, dim=-1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    return gm_of_nll(-log_pt, log_alpha)


def gm_loss(
    logits: torch.Tensor, labels: torch.Tensor, alpha: float, reduction: str = "mean"
) -> torch.Tensor:
    """Exact GM loss, no augmentation.

        L_g = −½ log(p_t · α p_t / (α p_t + 1)) = −log p_t − ½ log α + ½ log(α p_t + 1)

    Args:
        logits: (N, C).  labels: (N,) int64.  alpha: α > 0.
        reduction: "mean", "sum" or "none" (then shape (N,)).
    """
    check_logits(logits, labels)
    check_alpha(alpha)
    check_reduction(reduction)
    with torch.autocast(logits.device.type, enabled=False):
        loss = _gm_from_logits(logits.to(loss_dtype(logits)), labels, math.log(alpha))
    return reduce(loss, reduction)


def augmented_logit_factor(weight: torch.Tensor, class_cov: torch.Tensor) -> torch.Tensor:
    """Lower factors L_y with L_y L_yᵀ = W Σ_y Wᵀ, the logits' covariance per unit λ.

    Args:
        weight: (C, F), in the loss dtype (gradients flow through the factor into W).
        class_cov: (C, F, F) or (C, F) diagonal; no gradient.

    Returns:
        (C, C, C) factors, indexed [true class y].
    """
    return gaussian_factor(class_logit_covariance(weight, class_cov))


def gm_sampled_loss(
    features: torch.Tensor,
    labels: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    class_cov: torch.Tensor,
    lam: float,
    alpha: float,
    samples: int,
    generator: torch.Generator | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """Explicit GM loss: the mean of L_g over S sampled augmented logits per tile.

        z̃_ik = z_i + √λ · L_y ε_ik,   ε_ik ~ N(0, I_C),   L_y L_yᵀ = W Σ_y Wᵀ
        L = (1/S) Σ_k L_g(z̃_ik, y_i)

    Since z̃ = W ã + b with ã ~ N(a, λ Σ_y) is exactly N(z, λ W Σ_y Wᵀ), sampling the
    C logits draws from the same distribution as sampling F-dimensional features and
    mapping them through the head, at a cost that does not depend on F.

    Args:
        features: (N, F).  labels: (N,) int64.  weight: (C, F).  bias: (C,) or None.
        class_cov: (C, F, F) or (C, F) diagonal; no gradient.
        lam: λ >= 0.  alpha: α > 0.  samples: S >= 1.
        generator: optional torch.Generator on the features' device.
        reduction: "mean", "sum" or "none" (then shape (N,)).
    """
    num_classes = check_augmented(features, labels, weight, bias, class_cov, lam, alpha, reduction)
    if int(samples) != samples or samples < 1:
        raise ValueError(f"samples must be a positive integer, got {samples!r}")
    log_alpha = math.log(alpha)
    with torch.autocast(features.device.type, enabled=False):
        dtype = loss_dtype(features, weight)
        weight = weight.to(dtype)
        logits = F.linear(features.to(dtype), weight, None if bias is None else bias.to(dtype))
        per_tile = augmented_logit_factor(weight, class_cov)[labels] * math.sqrt(lam)  # (N, C, C)
        n = logits.shape[0]
        chunk = max(1, _SAMPLE_CHUNK_ELEMENTS // max(1, n * num_classes))
        total = torch.zeros(n, dtype=dtype, device=logits.device)
        for start in range(0, int(samples), chunk):
            s = min(chunk, int(samples) - start)
            eps = torch.randn(
                n, s, num_classes, dtype=dtype, device=logits.device, generator=generator
            )
            noisy = logits.unsqueeze(1) + torch.bmm(eps, per_tile.transpose(1, 2))  # (N, s, C)
            per_sample = _gm_from_logits(noisy, labels.unsqueeze(1).expand(n, s), log_alpha)
            total = total + per_sample.sum(1)
        loss = total / int(samples)
    return reduce(loss, reduction)


class GMSampledLoss(AugmentedLoss):
    """Explicit GM loss with its covariance estimator and the λ, α schedules."""

    def __init__(
        self,
        num_classes: int,
        feature_dim: int,
        lam0: float = 0.5,
        alpha0: float = 2.5,
        samples: int = 100,
        diagonal: bool = False,
    ) -> None:
        super().__init__(num_classes, feature_dim, lam0, alpha0, diagonal)
        if int(samples) != samples or samples < 1:
            raise ValueError(f"samples must be a positive integer, got {samples!r}")
        self.samples = int(samples)

    def hparams(self) -> dict[str, float]:
        """The hyper-parameters to record with a run."""
        return super().hparams() | {"samples": float(self.samples)}

    def augmented_loss(self, *args: Any) -> torch.Tensor:
        """:func:`gm_sampled_loss` with S samples per tile."""
        features, labels, weight, bias, class_cov, lam, alpha = args
        return gm_sampled_loss(features, labels, weight, bias, class_cov, lam, alpha, self.samples)
