"""Label-free adaptation of a trained model to a survey, from the survey's own photos."""

from models.adaptation.adapt import ADAPT_METHODS, AdaptConfig, AdaptResult, adapt
from models.adaptation.batchnorm import reestimate_batchnorm
from models.adaptation.prior import em_prior, expected_f1_threshold, rate_matched_threshold
from models.adaptation.tiles import survey_tiles

__all__ = [
    "ADAPT_METHODS",
    "AdaptConfig",
    "AdaptResult",
    "adapt",
    "em_prior",
    "expected_f1_threshold",
    "rate_matched_threshold",
    "reestimate_batchnorm",
    "survey_tiles",
]
