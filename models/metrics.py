"""Classification metrics, expected calibration error and temperature scaling.

Probabilities come from softmax(z / T); T = 1 before calibration.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F


def confusion_matrix(preds: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(C, C) int64 counts; row = true class, column = predicted class.

    Args:
        preds: (N,) predicted classes.  labels: (N,) true classes.
    """
    index = labels.to(torch.int64) * num_classes + preds.to(torch.int64)
    counts = torch.bincount(index.cpu(), minlength=num_classes * num_classes)
    return counts.view(num_classes, num_classes)


def classification_metrics(confusion: torch.Tensor, class_names: list[str]) -> dict[str, Any]:
    """Per-class and macro precision, recall and F1, accuracy, and the confusion matrix.

    A class with no predictions (or no samples) scores precision (or recall) 0.
    """
    cm = confusion.to(torch.float64)
    tp = cm.diagonal()
    predicted = cm.sum(0)
    actual = cm.sum(1)
    precision = torch.where(predicted > 0, tp / predicted.clamp(min=1), torch.zeros_like(tp))
    recall = torch.where(actual > 0, tp / actual.clamp(min=1), torch.zeros_like(tp))
    denom = precision + recall
    f1 = torch.where(
        denom > 0, 2 * precision * recall / denom.clamp(min=1e-12), torch.zeros_like(tp)
    )
    total = float(cm.sum())
    per_class = {
        name: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(actual[i]),
        }
        for i, name in enumerate(class_names)
    }
    return {
        "accuracy": float(tp.sum() / total) if total else 0.0,
        "macro_precision": float(precision.mean()),
        "macro_recall": float(recall.mean()),
        "macro_f1": float(f1.mean()),
        "per_class": per_class,
        "confusion": confusion.tolist(),
        "count": int(total),
    }


def expected_calibration_error(probs: torch.Tensor, labels: torch.Tensor, bins: int = 15) -> float:
    """Top-label ECE = Σ_b (n_b / N) · |accuracy_b − confidence_b| over equal-width bins.

    Args:
        probs: (N, C) probabilities.  labels: (N,) true classes.  bins: number of bins.
    """
    if probs.shape[0] == 0:
        return 0.0
    confidence, preds = probs.max(1)
    correct = (preds == labels).to(torch.float64)
    confidence = confidence.to(torch.float64)
    edges = torch.linspace(0, 1, bins + 1, dtype=torch.float64)
    which = torch.bucketize(confidence, edges[1:-1], right=False)  # (N,) bin index in [0, bins)
    ece = 0.0
    n = probs.shape[0]
    for b in range(bins):
        mask = which == b
        if bool(mask.any()):
            ece += (
                float(mask.sum()) / n * abs(float(correct[mask].mean() - confidence[mask].mean()))
            )
    return ece


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, max_iter: int = 200) -> float:
    """Temperature T > 0 minimising the NLL of softmax(z / T) (Guo et al., 2017).

    Args:
        logits: (N, C) validation logits.  labels: (N,) true classes.

    Returns:
        T, within [0.05, 100]; 1.0 for an empty set.
    """
    if logits.shape[0] == 0:
        return 1.0
    z = logits.detach().to(torch.float64).cpu()
    y = labels.detach().cpu()
    # A coarse grid on log T first: the NLL is not always convex in T.
    grid = torch.linspace(math.log(0.05), math.log(100.0), 60, dtype=torch.float64)
    nll = torch.stack([F.cross_entropy(z / g.exp(), y) for g in grid])
    log_t = grid[int(nll.argmin())].clone().requires_grad_(True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.5, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(z / log_t.exp(), y)
        loss.backward()
        return loss

    optimizer.step(closure)
    value = float(log_t.detach().exp())
    if not math.isfinite(value):
        return float(grid[int(nll.argmin())].exp())
    return min(max(value, 0.05), 100.0)


def evaluation_report(
    logits: torch.Tensor, labels: torch.Tensor, class_names: list[str], temperature: float = 1.0
) -> dict[str, Any]:
    """Metrics and calibration of (N, C) logits, before and after temperature scaling.

    The predicted class is the same at any T > 0; only probabilities (ECE, NLL) change.
    """
    z = logits.detach().to(torch.float64).cpu()
    y = labels.detach().cpu()
    report = classification_metrics(confusion_matrix(z.argmax(1), y, len(class_names)), class_names)
    raw = F.softmax(z, 1)
    scaled = F.softmax(z / temperature, 1)
    report["ece"] = expected_calibration_error(raw, y)
    report["nll"] = float(F.cross_entropy(z, y)) if len(y) else 0.0
    report["temperature"] = temperature
    report["ece_calibrated"] = expected_calibration_error(scaled, y)
    report["nll_calibrated"] = float(F.cross_entropy(z / temperature, y)) if len(y) else 0.0
    return report
