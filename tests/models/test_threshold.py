"""The operating threshold and the per-photo detection report."""

from __future__ import annotations

import pytest
import torch

from models.data import Sample
from models.evaluation import photo_report
from models.threshold import choose_threshold, detection_metrics


def brute_force(score, truth, rule, target=None):
    """Every cut between distinct scores, scored directly."""
    values = sorted(set(score.tolist()), reverse=True)
    cuts = [(a + b) / 2 for a, b in zip(values, values[1:] + [0.0], strict=True)]
    rows = [detection_metrics(score, truth, t) for t in cuts]
    if rule == "f1":
        return max(rows, key=lambda r: (r["f1"], -r["threshold"]))
    ok = [r for r in rows if r["precision"] >= target]
    return min(ok, key=lambda r: r["threshold"])


@pytest.mark.parametrize("seed", range(5))
def test_max_f1_and_target_precision_match_brute_force(seed):
    g = torch.Generator().manual_seed(seed)
    truth = torch.rand(300, generator=g) < 0.3
    score = (
        truth.double() * 0.35 + torch.rand(300, generator=g, dtype=torch.float64) * 0.65
    ).round(decimals=2)
    best = choose_threshold(score, truth)
    want = brute_force(score, truth, "f1")
    assert best["rule"] == "max_f1"
    assert best["val"]["f1"] == pytest.approx(want["f1"])
    strict = choose_threshold(score, truth, target_precision=0.9)
    want = brute_force(score, truth, "precision", 0.9)
    assert strict["rule"] == "target_precision" and strict["reached"]
    assert strict["threshold"] == pytest.approx(want["threshold"])
    assert strict["val"]["precision"] >= 0.9
    assert strict["val"]["recall"] == pytest.approx(want["recall"])


def test_unreachable_target_falls_back_to_f1_and_says_so():
    score = torch.tensor([0.9, 0.8, 0.7, 0.6], dtype=torch.float64)
    truth = torch.tensor([False, True, False, True])
    out = choose_threshold(score, truth, target_precision=0.99)
    assert out["rule"].startswith("max_f1") and not out["reached"]
    with pytest.raises(ValueError, match="target_precision"):
        choose_threshold(score, truth, target_precision=1.5)


def test_separable_scores_cut_between_the_classes():
    score = torch.tensor([0.95, 0.9, 0.4, 0.1], dtype=torch.float64)
    truth = torch.tensor([True, True, False, False])
    out = choose_threshold(score, truth)
    assert out["threshold"] == pytest.approx(0.65)
    assert out["val"]["f1"] == 1.0 and out["val"]["false_alarm_rate"] == 0.0


def test_photo_report_counts_each_photo():
    samples = [Sample("a.jpg", 0, (0, 0, 8, 8))] * 3 + [Sample("b.jpg", 1, (0, 0, 8, 8))] * 2
    score = torch.tensor([0.9, 0.2, 0.8, 0.7, 0.1], dtype=torch.float64)
    truth = torch.tensor([True, True, False, False, False])
    report = photo_report(samples, score, truth, 0.5)
    photos = {p["photo"]: p for p in report["photos"]}
    assert photos["a.jpg"]["recall"] == 0.5 and photos["a.jpg"]["false_alarm_rate"] == 1.0
    assert photos["b.jpg"]["false_alarm_rate"] == 0.5
    assert report["clean_photos_flagged"] == 1.0
    assert report["tiles"]["tiles"] == 5 and report["tiles"]["defect_tiles"] == 2
