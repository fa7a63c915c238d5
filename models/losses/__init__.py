"""The IGMSDA loss family (../shared/docs/IGMSDA.md).

Functional core: isda_loss, igmsda_loss, gm_loss, gm_sampled_loss, focal_loss.
Modules with their covariance estimator and schedules: ISDALoss, IGMSDALoss, GMSampledLoss.
"""

from models.losses.covariance import ClassCovariance, class_pair_quadratic, covariance_factor
from models.losses.focal import FocalLoss, focal_loss
from models.losses.gm import GMSampledLoss, gm_loss, gm_sampled_loss
from models.losses.igmsda import IGMSDALoss, igmsda_loss
from models.losses.isda import ISDALoss, isda_loss
from models.losses.schedules import alpha_schedule, lam_schedule

__all__ = [
    "ClassCovariance",
    "FocalLoss",
    "GMSampledLoss",
    "IGMSDALoss",
    "ISDALoss",
    "alpha_schedule",
    "class_pair_quadratic",
    "covariance_factor",
    "focal_loss",
    "gm_loss",
    "gm_sampled_loss",
    "igmsda_loss",
    "isda_loss",
    "lam_schedule",
]
