"""The gradient-modulated (GM) loss: exact on logits, and explicitly sampled in feature space."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from models.losses._checks import (
    check_alpha,
    check_lam,
    check_linear,
    check_logits,
    check_reduction,
    loss_dtype,
    reduce,
)
from models.losses.covariance import ClassCovariance, covariance_factor
from models.losses.schedules import alpha_schedule, lam_schedule

# Bound on N·S·F noise values drawn at once by gm_sampled_loss (about 64 MB in float32).
_SAMPLE_CHUNK_ELEMENTS = 1 << 24


def _gm_from_logits(logits: torch.Tensor, labels: torch.Tensor, log_alpha: float) -> torch.Tensor:
    """L_g = −log p_t − ½ log α + ½ log(α p_t + 1) for (M, C) logits; returns (M,)."""
    log_pt = F.log_softmax(logits, dim=-1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    return -log_pt - 0.5 * log_alpha + 0.5 * F.softplus(log_alpha + log_pt)


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
    """Explicit GM loss: the mean of L_g over S sampled augmented features per tile.

        ã_ik = a_i + √λ · L_y ε_ik,   ε_ik ~ N(0, I_F),   L_y L_yᵀ = Σ_y
        L = (1/S) Σ_k L_g(W ã_ik + b, y_i)

    Since W ã + b = z + √λ (W L_y) ε, the noise is pushed through the (C, F)
    product W L_y rather than materialising every ã; the draws are the same.
    The noise is drawn in chunks so memory stays bounded for large S.

    Args:
        features: (N, F).  labels: (N,) int64.  weight: (C, F).  bias: (C,) or None.
        class_cov: (C, F, F) or (C, F) diagonal; no gradient.
        lam: λ >= 0.  alpha: α > 0.  samples: S >= 1.
        generator: optional torch.Generator on the features' device.
        reduction: "mean", "sum" or "none" (then shape (N,)).
    """
    check_linear(features, labels, weight, bias, class_cov)
    check_lam(lam)
    check_alpha(alpha)
    check_reduction(reduction)
    if int(samples) != samples or samples < 1:
        raise ValueError(f"samples must be a positive integer, got {samples!r}")
    log_alpha = math.log(alpha)
    with torch.autocast(features.device.type, enabled=False):
        dtype = loss_dtype(features, weight)
        weight = weight.to(dtype)
        feats = features.to(dtype)
        logits = F.linear(feats, weight, None if bias is None else bias.to(dtype))  # (N, C)
        factor = covariance_factor(class_cov.to(dtype))
        if factor.dim() == 2:  # diagonal: W L_y = W diag(σ_y)
            projected = weight.unsqueeze(0) * factor.unsqueeze(1)  # (C_y, C, F)
        else:
            projected = torch.matmul(weight.unsqueeze(0), factor)  # (C_y, C, F)
        per_tile = projected[labels] * math.sqrt(lam)  # (N, C, F)
        n, feature_dim = feats.shape
        chunk = max(1, _SAMPLE_CHUNK_ELEMENTS // max(1, n * feature_dim))
        total = torch.zeros(n, dtype=dtype, device=feats.device)
        for start in range(0, int(samples), chunk):
            s = min(chunk, int(samples) - start)
            eps = torch.randn(
                n, s, feature_dim, dtype=dtype, device=feats.device, generator=generator
            )
            noisy = logits.unsqueeze(1) + torch.bmm(eps, per_tile.transpose(1, 2))  # (N, s, C)
            total = total + _gm_from_logits(noisy, labels.unsqueeze(1).expand(n, s), log_alpha).sum(
                1
            )
        loss = total / int(samples)
    return reduce(loss, reduction)


class GMSampledLoss(nn.Module):
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
        super().__init__()
        check_lam(lam0)
        if int(samples) != samples or samples < 1:
            raise ValueError(f"samples must be a positive integer, got {samples!r}")
        self.lam0 = float(lam0)
        self.alpha0 = float(alpha0)
        self.samples = int(samples)
        self.estimator = ClassCovariance(num_classes, feature_dim, diagonal=diagonal)

    def hparams(self) -> dict[str, float]:
        """The hyper-parameters to record with a run."""
        return {"lam0": self.lam0, "alpha0": self.alpha0, "samples": float(self.samples)}

    def forward(
        self,
        features: torch.Tensor,
        labels: torch.Tensor,
        classifier: nn.Linear,
        progress: float,
    ) -> torch.Tensor:
        """Args: features (N, F), labels (N,), the linear head, progress t/T in [0, 1]."""
        self.estimator.update(features, labels)
        lam = lam_schedule(progress, self.lam0)
        alpha = alpha_schedule(progress, self.alpha0)
        return gm_sampled_loss(
            features,
            labels,
            classifier.weight,
            classifier.bias,
            self.estimator.cov,
            lam,
            alpha,
            self.samples,
        )
