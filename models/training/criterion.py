"""One call shape for every loss: criterion(features, labels, head, progress) -> scalar."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.losses import GMSampledLoss, IGMSDAExactLoss, IGMSDALoss, ISDALoss, focal_loss
from models.training.config import TrainConfig


class LogitLoss(nn.Module):
    """CE or focal on the head's logits; has no estimator and ignores progress."""

    def __init__(self, kind: str, gamma: float = 2.0) -> None:
        super().__init__()
        self.kind = kind
        self.gamma = gamma

    def hparams(self) -> dict[str, float]:
        return {"gamma": self.gamma} if self.kind == "focal" else {}

    def forward(
        self, features: torch.Tensor, labels: torch.Tensor, head: nn.Linear, progress: float
    ) -> torch.Tensor:
        logits = head(features).float()
        if self.kind == "focal":
            return focal_loss(logits, labels, self.gamma)
        return F.cross_entropy(logits, labels)


def build_criterion(config: TrainConfig, num_classes: int, feature_dim: int) -> nn.Module:
    """The loss module named by config.loss, with the config's hyper-parameters."""
    if config.loss in ("ce", "focal"):
        return LogitLoss(config.loss, config.focal_gamma)
    if config.loss == "isda":
        return ISDALoss(num_classes, feature_dim, config.lam0, config.diagonal_cov)
    if config.loss == "gm":
        return GMSampledLoss(
            num_classes,
            feature_dim,
            config.lam0,
            config.alpha0,
            config.gm_samples,
            config.diagonal_cov,
        )
    modulated = {"igmsda": IGMSDALoss, "igmsda-exact": IGMSDAExactLoss}[config.loss]
    return modulated(num_classes, feature_dim, config.lam0, config.alpha0, config.diagonal_cov)


def estimator_of(criterion: nn.Module) -> nn.Module | None:
    """The criterion's covariance estimator, if it has one."""
    est = getattr(criterion, "estimator", None)
    return est if isinstance(est, nn.Module) else None
