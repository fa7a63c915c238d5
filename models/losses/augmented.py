"""The scaffold every feature-augmentation loss shares: estimator, schedules, functional call."""

from __future__ import annotations

import abc
import math
from typing import Any

import torch
from torch import nn

from models.losses._checks import check_lam
from models.losses.covariance import ClassCovariance
from models.losses.schedules import alpha_schedule, lam_schedule


class AugmentedLoss(nn.Module, abc.ABC):
    """A loss over ã ~ N(a, λ Σ_y), with its covariance estimator and the schedules.

    Each call folds the batch's detached features into the estimator, sets
    λ = (t/T)·λ0 and α = (t/T)·α0 + 1 (IGMSDA.md, "Schedules"), then calls
    :meth:`augmented_loss`, the subclass's functional core, with the updated Σ.
    Subclasses without a modulation pass ``alpha0=None``.
    """

    def __init__(
        self,
        num_classes: int,
        feature_dim: int,
        lam0: float = 0.5,
        alpha0: float | None = 2.5,
        diagonal: bool = False,
    ) -> None:
        super().__init__()
        check_lam(lam0)
        if alpha0 is not None and (not math.isfinite(alpha0) or alpha0 < 0):
            raise ValueError(f"alpha0 must be a finite number >= 0, got {alpha0!r}")
        self.lam0 = float(lam0)
        self.alpha0 = None if alpha0 is None else float(alpha0)
        self.estimator = ClassCovariance(num_classes, feature_dim, diagonal=diagonal)

    def hparams(self) -> dict[str, float]:
        """The hyper-parameters to record with a run."""
        return {"lam0": self.lam0} | ({} if self.alpha0 is None else {"alpha0": self.alpha0})

    @abc.abstractmethod
    def augmented_loss(self, *args: Any) -> torch.Tensor:
        """The subclass's functional loss, called with (features, labels, weight, bias,
        class_cov, λ, α) at the scheduled λ and α."""

    def forward(
        self,
        features: torch.Tensor,
        labels: torch.Tensor,
        classifier: nn.Linear,
        progress: float,
    ) -> torch.Tensor:
        """Args: features (N, F), labels (N,), the linear head, progress t/T in [0, 1].

        Returns: the scalar mean loss over the batch.
        """
        self.estimator.update(features, labels)
        lam = lam_schedule(progress, self.lam0)
        alpha = alpha_schedule(progress, self.alpha0 or 0.0)
        return self.augmented_loss(
            features, labels, classifier.weight, classifier.bias, self.estimator.cov, lam, alpha
        )
