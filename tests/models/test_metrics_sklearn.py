"""models/metrics.py and models/threshold.py against scikit-learn, on random predictions.

Our metrics stay our own (models/ depends on torch only); scikit-learn, a dev dependency,
is the independent reference they must agree with.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn import metrics as sk
from sklearn.calibration import calibration_curve

from models.metrics import (
    classification_metrics,
    confusion_matrix,
    evaluation_report,
    expected_calibration_error,
)
from models.threshold import detection_metrics


def random_predictions(seed: int, n: int = 500, classes: int = 4):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, classes, generator=g, dtype=torch.float64) * 2
    labels = torch.randint(0, classes, (n,), generator=g)
    return logits, labels


@pytest.mark.parametrize("seed", range(5))
def test_confusion_and_class_metrics_match_sklearn(seed):
    logits, labels = random_predictions(seed)
    preds = logits.argmax(1)
    names = ["a", "b", "c", "d"]
    if seed == 4:  # a class never predicted: sklearn's zero_division=0 is our rule too
        preds = torch.where(preds == 3, torch.zeros_like(preds), preds)
    cm = confusion_matrix(preds, labels, 4)
    expected = sk.confusion_matrix(labels.numpy(), preds.numpy(), labels=range(4))
    np.testing.assert_array_equal(cm.numpy(), expected)

    ours = classification_metrics(cm, names)
    p, r, f, support = sk.precision_recall_fscore_support(
        labels.numpy(), preds.numpy(), labels=range(4), zero_division=0
    )
    for i, name in enumerate(names):
        assert ours["per_class"][name]["precision"] == pytest.approx(p[i], abs=1e-12)
        assert ours["per_class"][name]["recall"] == pytest.approx(r[i], abs=1e-12)
        assert ours["per_class"][name]["f1"] == pytest.approx(f[i], abs=1e-12)
        assert ours["per_class"][name]["support"] == support[i]
    y, yhat = labels.numpy(), preds.numpy()
    assert ours["accuracy"] == pytest.approx(sk.accuracy_score(y, yhat), abs=1e-12)
    assert ours["macro_f1"] == pytest.approx(
        sk.f1_score(y, yhat, average="macro", labels=range(4), zero_division=0), abs=1e-12
    )
    assert ours["macro_precision"] == pytest.approx(
        sk.precision_score(y, yhat, average="macro", labels=range(4), zero_division=0), abs=1e-12
    )


@pytest.mark.parametrize("seed", range(3))
def test_nll_matches_sklearn_log_loss(seed):
    logits, labels = random_predictions(seed)
    report = evaluation_report(logits, labels, ["a", "b", "c", "d"], temperature=1.7)
    probs = torch.softmax(logits, 1).numpy()
    assert report["nll"] == pytest.approx(sk.log_loss(labels.numpy(), probs, labels=range(4)))
    scaled = torch.softmax(logits / 1.7, 1).numpy()
    assert report["nll_calibrated"] == pytest.approx(
        sk.log_loss(labels.numpy(), scaled, labels=range(4))
    )


@pytest.mark.parametrize("bins", [5, 15])
def test_ece_matches_sklearn_calibration_curve(bins):
    logits, labels = random_predictions(7, n=2000)
    probs = torch.softmax(logits, 1)
    confidence, preds = probs.max(1)
    correct = (preds == labels).numpy().astype(int)
    # sklearn gives each non-empty bin's accuracy and mean confidence; the counts weight them.
    accuracy, mean_conf = calibration_curve(
        correct, confidence.numpy(), n_bins=bins, strategy="uniform"
    )
    counts = np.histogram(confidence.numpy(), bins=np.linspace(0, 1, bins + 1))[0]
    counts = counts[counts > 0]
    expected = float(np.sum(counts / counts.sum() * np.abs(accuracy - mean_conf)))
    assert expected_calibration_error(probs, labels, bins) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("threshold", [0.2, 0.5, 0.8])
def test_detection_metrics_match_sklearn(threshold):
    g = torch.Generator().manual_seed(3)
    score = torch.rand(800, generator=g, dtype=torch.float64)
    truth = torch.rand(800, generator=g) < 0.3 + 0.4 * score.float()
    ours = detection_metrics(score, truth, threshold)
    flagged = (score >= threshold).numpy()
    y = truth.numpy()
    p, r, f, _ = sk.precision_recall_fscore_support(
        y, flagged, average="binary", pos_label=True, zero_division=0
    )
    tn, fp, _, _ = sk.confusion_matrix(y, flagged, labels=[False, True]).ravel()
    assert ours["precision"] == pytest.approx(p, abs=1e-12)
    assert ours["recall"] == pytest.approx(r, abs=1e-12)
    assert ours["f1"] == pytest.approx(f, abs=1e-12)
    assert ours["false_alarm_rate"] == pytest.approx(fp / (fp + tn), abs=1e-12)
