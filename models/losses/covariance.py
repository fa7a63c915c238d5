"""Class-conditional feature covariance: the online estimator and the C x C quadratic table.

Both follow ../shared/docs/IGMSDA.md ("ISDA" section).
"""

from __future__ import annotations

import torch
from torch import nn


class ClassCovariance(nn.Module):
    """Online estimate of the class-conditional feature covariance Σ_c.

    For a batch holding n_c features of class c with mean μ_b and biased
    covariance Σ_b, and a running count N_c, mean μ and covariance Σ::

        w = n_c / (n_c + N_c)        (0 when both are 0)
        Σ ← (1−w) Σ + w Σ_b + w (1−w) (μ − μ_b)(μ − μ_b)ᵀ
        μ ← (1−w) μ + w μ_b ;  N_c ← N_c + n_c

    which equals the biased covariance of every feature seen so far. The state
    lives in buffers, so it is saved by ``state_dict()`` and moves with ``.to()``.

    Attributes:
        count: (C,) int64, features seen per class.
        mean: (C, F) running class means.
        cov: (C, F, F) running covariances, or (C, F) variances when ``diagonal``.
    """

    count: torch.Tensor
    mean: torch.Tensor
    cov: torch.Tensor

    def __init__(
        self,
        num_classes: int,
        feature_dim: int,
        diagonal: bool = False,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        if feature_dim < 1:
            raise ValueError(f"feature_dim must be >= 1, got {feature_dim}")
        self.num_classes = num_classes
        self.feature_dim = feature_dim
        self.diagonal = diagonal
        cov_shape = (
            (num_classes, feature_dim) if diagonal else (num_classes, feature_dim, feature_dim)
        )
        self.register_buffer("count", torch.zeros(num_classes, dtype=torch.int64))
        self.register_buffer("mean", torch.zeros(num_classes, feature_dim, dtype=dtype))
        self.register_buffer("cov", torch.zeros(cov_shape, dtype=dtype))

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, feature_dim={self.feature_dim}, diagonal={self.diagonal}"

    @torch.no_grad()
    def update(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Fold a batch into the estimate.

        Args:
            features: (N, F) features; detached and cast to the buffers' dtype.
            labels: (N,) int64 class indices in [0, C).
        """
        if features.dim() != 2 or features.shape[1] != self.feature_dim:
            raise ValueError(
                f"features must have shape (N, {self.feature_dim}), got {tuple(features.shape)}"
            )
        if labels.shape != (features.shape[0],):
            raise ValueError(
                f"labels must have shape ({features.shape[0]},), got {tuple(labels.shape)}"
            )
        if features.shape[0] == 0:
            return
        a = features.detach().to(self.mean.dtype)
        onehot = nn.functional.one_hot(labels, self.num_classes).to(a.dtype)  # (N, C)
        n = onehot.sum(0)  # (C,)
        batch_mean = (onehot.t() @ a) / n.clamp(min=1).unsqueeze(1)  # (C, F)
        centred = a - batch_mean[labels]  # (N, F), centred on its own class mean
        total = n + self.count.to(a.dtype)
        w = torch.where(total > 0, n / total.clamp(min=1), torch.zeros_like(n))  # (C,)
        delta = self.mean - batch_mean  # (C, F)
        # w Σ_b + w(1−w) d dᵀ = Σ_i∈c (w/n_c) x_i x_iᵀ + s sᵀ with s = √(w(1−w)) d: one
        # product over the batch rows plus one extra row per class, so Σ is read twice.
        shift = delta * torch.sqrt(w * (1 - w)).unsqueeze(1)  # (C, F)
        rows = torch.cat([onehot.t().unsqueeze(2) * centred.unsqueeze(0), shift.unsqueeze(1)], 1)
        left = rows * torch.cat(
            [
                (w / n.clamp(min=1)).view(-1, 1).expand(-1, rows.shape[1] - 1),
                torch.ones_like(w).view(-1, 1),
            ],
            1,
        ).unsqueeze(2)  # (C, N+1, F)
        if self.diagonal:
            self.cov.mul_((1 - w).unsqueeze(1)).add_((left * rows).sum(1))
        else:
            self.cov.mul_((1 - w).view(-1, 1, 1)).baddbmm_(left.transpose(1, 2), rows)
        self.mean.sub_(delta * w.unsqueeze(1))
        self.count.add_(n.to(torch.int64))


def class_pair_quadratic(weight: torch.Tensor, class_cov: torch.Tensor) -> torch.Tensor:
    """The C x C table q[y, j] = (w_j − w_y)ᵀ Σ_y (w_j − w_y), with q[y, y] = 0.

    It is computed once per step, never per sample: O(C²·F²) time, O(C²·F) memory.

    Args:
        weight: (C, F) classifier weights (gradients flow into them).
        class_cov: (C, F, F) covariances or (C, F) variances; treated as constant.

    Returns:
        (C, C) table, row y = true class, column j = other class.
    """
    cov = class_cov.detach().to(weight.dtype)
    diff = weight.unsqueeze(0) - weight.unsqueeze(1)  # (C_y, C_j, F): w_j − w_y
    if cov.dim() == 2:
        return (diff * diff * cov.unsqueeze(1)).sum(-1)
    return (torch.bmm(diff, cov) * diff).sum(-1)


def _quadratic_forms(rows: torch.Tensor, class_cov: torch.Tensor) -> torch.Tensor:
    """rows[c] Σ_c rows[c]ᵀ for (C, R, F) rows: (C, R, R); Σ_c full (C, F, F) or (C, F)."""
    cov = class_cov.detach().to(rows.dtype)
    left = rows * cov.unsqueeze(1) if cov.dim() == 2 else torch.bmm(rows, cov)
    return torch.bmm(left, rows.transpose(1, 2))


def class_pair_covariance(weight: torch.Tensor, class_cov: torch.Tensor) -> torch.Tensor:
    """The margins' covariance per unit λ: K[y, j, k] = (w_j − w_y)ᵀ Σ_y (w_k − w_y).

    Under ã ~ N(a, λ Σ_y) the margins Δ_j = z̃_j − z̃_y have covariance λ K[y]; its
    diagonal K[y, j, j] is the quadratic table q[y, j]. Row and column y are 0.

    Args:
        weight: (C, F) classifier weights (gradients flow into them).
        class_cov: (C, F, F) covariances or (C, F) variances; treated as constant.

    Returns:
        (C, C, C) table, indexed [true class y, j, k].
    """
    diff = weight.unsqueeze(0) - weight.unsqueeze(1)  # (C_y, C_j, F): w_j − w_y
    return _quadratic_forms(diff, class_cov)


def class_logit_covariance(weight: torch.Tensor, class_cov: torch.Tensor) -> torch.Tensor:
    """The logits' covariance per unit λ: W Σ_y Wᵀ, so that z̃ ~ N(z, λ W Σ_y Wᵀ).

    Args:
        weight: (C, F) classifier weights (gradients flow into them).
        class_cov: (C, F, F) covariances or (C, F) variances; treated as constant.

    Returns:
        (C, C, C) table, indexed [true class y, j, k].
    """
    rows = weight.unsqueeze(0).expand(class_cov.shape[0], -1, -1)  # (C_y, C, F)
    return _quadratic_forms(rows, class_cov)
