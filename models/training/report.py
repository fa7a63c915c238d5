"""A trained model's final report: temperature, operating threshold, validation and test metrics."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from models.metrics import evaluation_report, fit_temperature
from models.threshold import choose_threshold, defect_scores, detection_metrics


@dataclass
class FinalReport:
    temperature: float
    threshold: float
    metrics: dict[str, Any]


def final_report(
    val_logits: torch.Tensor,
    val_labels: torch.Tensor,
    test_logits: torch.Tensor,
    test_labels: torch.Tensor,
    classes: list[str],
    defect_classes: list[str],
    target_precision: float | None,
) -> FinalReport:
    """Fit T on validation, choose the operating threshold on the calibrated validation
    p_defect, then report both splits: class metrics before and after T, and the tile
    detection metrics (precision, recall, F1, false alarms) at the chosen threshold.

    Args:
        val_logits, test_logits: (N, C) float logits.  val_labels, test_labels: (N,) int64.
    """
    temperature = fit_temperature(val_logits, val_labels)
    defect_index = [classes.index(c) for c in defect_classes]

    def scores(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        probs = torch.softmax(logits.to(torch.float64) / temperature, 1)
        return defect_scores(probs, labels, defect_index)

    operating = choose_threshold(*scores(val_logits, val_labels), target_precision)
    threshold = float(operating["threshold"])
    metrics = {
        "val": evaluation_report(val_logits, val_labels, classes, temperature),
        "test": evaluation_report(test_logits, test_labels, classes, temperature),
        "operating_point": {k: v for k, v in operating.items() if k != "val"},
    }
    metrics["val"]["detection"] = operating["val"]
    metrics["test"]["detection"] = detection_metrics(*scores(test_logits, test_labels), threshold)
    return FinalReport(temperature, threshold, metrics)
