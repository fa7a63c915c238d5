"""Training: configuration, criteria, the loop and its results."""

from models.device import select_device
from models.training.config import LOSSES, TrainConfig
from models.training.criterion import build_criterion
from models.training.loop import TrainResult, fit, predict_logits, train_one_epoch

__all__ = [
    "LOSSES",
    "TrainConfig",
    "TrainResult",
    "build_criterion",
    "fit",
    "predict_logits",
    "select_device",
    "train_one_epoch",
]
