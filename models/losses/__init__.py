"""The IGMSDA loss family (../shared/docs/IGMSDA.md).

Functional core: isda_loss, igmsda_loss, gm_expected_loss, gm_loss, gm_sampled_loss,
focal_loss. Modules with their covariance estimator and schedules (one AugmentedLoss
scaffold): ISDALoss, IGMSDALoss, IGMSDAExactLoss, GMSampledLoss.
"""

from models.losses.augmented import AugmentedLoss
from models.losses.covariance import (
    ClassCovariance,
    class_logit_covariance,
    class_pair_covariance,
    class_pair_quadratic,
)
from models.losses.focal import FocalLoss, focal_loss
from models.losses.gaussian import gaussian_factor, gaussian_rule
from models.losses.gm import GMSampledLoss, gm_loss, gm_sampled_loss
from models.losses.igmsda import IGMSDALoss, igmsda_loss
from models.losses.igmsda_exact import IGMSDAExactLoss, gm_expected_loss
from models.losses.isda import ISDALoss, isda_loss
from models.losses.schedules import alpha_schedule, lam_schedule

__all__ = [
    "AugmentedLoss",
    "ClassCovariance",
    "FocalLoss",
    "GMSampledLoss",
    "IGMSDAExactLoss",
    "IGMSDALoss",
    "ISDALoss",
    "alpha_schedule",
    "class_logit_covariance",
    "class_pair_covariance",
    "class_pair_quadratic",
    "focal_loss",
    "gaussian_factor",
    "gaussian_rule",
    "gm_expected_loss",
    "gm_loss",
    "gm_sampled_loss",
    "igmsda_loss",
    "isda_loss",
    "lam_schedule",
]
