"""Metrics against hand-computed values; temperature scaling recovers a known temperature."""

from __future__ import annotations

import pytest
import torch

from models.metrics import (
    classification_metrics,
    confusion_matrix,
    evaluation_report,
    expected_calibration_error,
    fit_temperature,
)


def test_confusion_and_macro_scores_by_hand():
    labels = torch.tensor([0, 0, 0, 1, 1, 2])
    preds = torch.tensor([0, 1, 0, 1, 1, 1])
    cm = confusion_matrix(preds, labels, 3)
    assert cm.tolist() == [[2, 1, 0], [0, 2, 0], [0, 1, 0]]
    m = classification_metrics(cm, ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["per_class"]["a"] == {
        "precision": 1.0,
        "recall": pytest.approx(2 / 3),
        "f1": pytest.approx(0.8),
        "support": 3,
    }
    assert m["per_class"]["b"]["precision"] == pytest.approx(0.5)
    assert m["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert m["macro_f1"] == pytest.approx((0.8 + 2 / 3 + 0) / 3)


def test_ece_by_hand():
    probs = torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.3, 0.7]])
    labels = torch.tensor([0, 1, 0, 1])
    # bins: 0.9 (two, one right) -> |0.5 - 0.9|; 0.6 -> |1 - 0.6|; 0.7 -> |1 - 0.7|
    want = 2 / 4 * 0.4 + 1 / 4 * 0.4 + 1 / 4 * 0.3
    assert expected_calibration_error(probs, labels, bins=10) == pytest.approx(want)


def test_temperature_scaling_recovers_the_true_temperature():
    g = torch.Generator().manual_seed(0)
    z = 4 * torch.randn(20000, 3, generator=g, dtype=torch.float64)
    true_t = 2.5
    labels = torch.multinomial(torch.softmax(z / true_t, 1), 1, generator=g).squeeze(1)
    t = fit_temperature(z, labels)
    assert t == pytest.approx(true_t, rel=0.05)
    report = evaluation_report(z, labels, ["a", "b", "c"], t)
    assert report["ece_calibrated"] < report["ece"]
    assert report["nll_calibrated"] < report["nll"]
