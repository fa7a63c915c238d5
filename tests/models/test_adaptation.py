"""Label-free adaptation: the prior's EM, the thresholds, AdaBN and adapt() itself."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from models.adaptation import (
    AdaptConfig,
    adapt,
    em_prior,
    expected_f1_threshold,
    rate_matched_threshold,
    reestimate_batchnorm,
    survey_tiles,
)
from models.adaptation.adapt import source_prior
from tests.models.inference.test_predictor import random_checkpoint


def gaussian_posteriors(x: torch.Tensor, prior: float) -> torch.Tensor:
    """Exact (N, 2) posteriors of class 1 ~ N(1, 1) against class 0 ~ N(-1, 1)."""
    log_odds = 2 * x + math.log(prior / (1 - prior))  # log N(x;1,1)/N(x;-1,1) = 2x
    p1 = torch.sigmoid(log_odds)
    return torch.stack([1 - p1, p1], 1)


def test_em_recovers_the_survey_prior_by_monte_carlo():
    g = torch.Generator().manual_seed(0)
    n, true_prior = 200_000, 0.2
    labels = torch.rand(n, generator=g, dtype=torch.float64) < true_prior
    x = torch.randn(n, generator=g, dtype=torch.float64) + torch.where(labels, 1.0, -1.0)
    calibrated_at_half = gaussian_posteriors(x, 0.5)  # the model was calibrated on 50/50
    prior, adjusted = em_prior(calibrated_at_half, torch.tensor([0.5, 0.5]))
    # Monte Carlo error of the share: sqrt(0.2 * 0.8 / n) ~ 9e-4.
    assert prior[1].item() == pytest.approx(float(labels.double().mean()), abs=4e-3)
    want = gaussian_posteriors(x, prior[1].item())
    torch.testing.assert_close(adjusted, want, atol=1e-6, rtol=0)  # EM stops at tol 1e-8
    with pytest.raises(ValueError, match="> 0"):
        em_prior(calibrated_at_half, torch.tensor([1.0, 0.0]))


def test_the_expected_f1_cut_matches_the_realised_optimum_on_calibrated_scores():
    g = torch.Generator().manual_seed(1)
    n = 100_000
    x = torch.randn(n, generator=g, dtype=torch.float64) * 2
    p = torch.sigmoid(x - 2.0)  # calibrated scores: draw the labels from them
    labels = torch.rand(n, generator=g, dtype=torch.float64) < p
    cut = expected_f1_threshold(p)

    def f1(t: float) -> float:
        flagged = p >= t
        tp = float((flagged & labels).sum())
        return 2 * tp / (float(flagged.sum()) + float(labels.sum()))

    best = max(f1(t) for t in np.linspace(0.01, 0.99, 99))
    assert f1(cut) == pytest.approx(best, abs=0.005)
    # Calibrated scores: the optimal cut is half the optimal F1 (Lipton et al., 2014).
    assert cut == pytest.approx(best / 2, abs=0.02)


def test_a_rate_matched_threshold_flags_that_share():
    score = torch.linspace(0, 1, 1001, dtype=torch.float64)
    cut = rate_matched_threshold(score, 0.1)
    assert int((score >= cut).sum()) == 100
    assert int((score >= rate_matched_threshold(score, 0.0)).sum()) == 0
    assert int((score >= rate_matched_threshold(score, 1.0)).sum()) == 1001


class TinyNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 1, bias=False)
        self.bn = torch.nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


def test_adabn_statistics_are_the_exact_averages_over_the_tiles():
    from models.data import normalise

    torch.manual_seed(0)
    net = TinyNet()
    tiles = torch.randint(0, 256, (48, 3, 6, 6), dtype=torch.uint8)  # 3 batches of 16
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    with torch.no_grad():
        features = net.conv(normalise(tiles, mean, std)).double()
    batches = features.split(16)
    # Cumulative averages over equal batches: the overall mean, and BatchNorm's unbiased
    # per-batch variance averaged over the batches.
    want_mu = features.mean((0, 2, 3))
    want_var = torch.stack([b.var((0, 2, 3), unbiased=True) for b in batches]).mean(0)
    assert reestimate_batchnorm(net, tiles, mean, std, blend=1.0, batch_size=16) == 1
    assert not net.training and net.bn.momentum == 0.1  # its own momentum given back
    torch.testing.assert_close(net.bn.running_mean.double(), want_mu, atol=1e-5, rtol=0)
    torch.testing.assert_close(net.bn.running_var.double(), want_var, atol=1e-5, rtol=1e-5)
    half = TinyNet()
    half.load_state_dict(net.state_dict())
    half.bn.running_mean.zero_()
    half.bn.running_var.fill_(1.0)
    reestimate_batchnorm(half, tiles, mean, std, blend=0.5, batch_size=16)
    torch.testing.assert_close(half.bn.running_mean.double(), 0.5 * want_mu, atol=1e-5, rtol=0)
    torch.testing.assert_close(
        half.bn.running_var.double(), 0.5 + 0.5 * want_var, atol=1e-5, rtol=1e-5
    )
    with pytest.raises(ValueError, match="blend"):
        reestimate_batchnorm(net, tiles, mean, std, blend=1.5)


def photos(n: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)) for _ in range(n)]


def test_survey_tiles_are_cut_on_the_models_grid_and_bounded():
    ckpt = random_checkpoint()
    ckpt.tile_px = 64  # a 96 x 128 photo: 2 x 3 tiles of 64 at stride 32
    every = survey_tiles(photos(2), ckpt, 1000)
    assert every.shape == (12, 3, 32, 32) and every.dtype == torch.uint8
    five = survey_tiles(photos(2), ckpt, 5)
    assert five.shape[0] == 5
    decoded: list[int] = []

    def lazily(k: int, image: Image.Image):
        def load() -> Image.Image:
            decoded.append(k)
            return image

        return load

    same = survey_tiles([lazily(k, p) for k, p in enumerate(photos(2))], ckpt, 5)
    assert torch.equal(same, five) and decoded == [0, 1]  # one at a time, in order
    # An equal share per photo: 3 from the first photo, 2 from the second.
    firsts = survey_tiles(photos(2)[:1], ckpt, 1000)
    assert sum(any(torch.equal(t, f) for f in firsts) for t in five) == 3
    with pytest.raises(ValueError, match="no photos"):
        survey_tiles([], ckpt, 5)


def test_adapt_changes_what_its_method_says_and_records_it():
    base = random_checkpoint()
    base.threshold = 0.5
    survey = photos(3, seed=4)
    config = {"max_tiles": 200, "device": "cpu", "cpu_bf16": False}
    prior_only = adapt(base, survey, AdaptConfig(method="prior", **config))
    for key, value in base.model_state.items():
        assert torch.equal(prior_only.checkpoint.model_state[key], value), key
    report = prior_only.report
    # 3 photos of 96 x 128 cut as inference maps them, 32-px tiles without overlap: 3 x 4 each.
    assert report["photos"] == 3 and report["tiles"] == 36 and report["method"] == "prior"
    assert prior_only.checkpoint.metrics["adaptation"] == report
    assert prior_only.checkpoint.threshold == report["threshold"]
    bn = adapt(base, survey, AdaptConfig(method="adabn", **config))
    key = next(k for k in base.model_state if k.endswith("running_mean"))
    assert not torch.equal(bn.checkpoint.model_state[key], base.model_state[key])
    assert bn.checkpoint.threshold == 0.5 and bn.report["batchnorm_layers"] > 0
    assert bn.checkpoint.content_hash != base.content_hash
    rate = adapt(base, survey, AdaptConfig(method="adabn+rate", **config))
    assert rate.report["flagged_share"] == pytest.approx(
        rate.report["base_flagged_share"], abs=0.01
    )
    with pytest.raises(ValueError, match="method"):
        AdaptConfig(method="magic")


def test_the_source_prior_is_the_validation_split_or_uniform():
    ckpt = random_checkpoint()
    assert source_prior(ckpt).tolist() == [0.5, 0.5]
    ckpt.metrics = {"data": {"counts": {"val": {"crack": 30, "no_crack": 90}}}}
    assert source_prior(ckpt).tolist() == [0.25, 0.75]


def test_survey_tiles_of_a_model_without_tile_px_are_the_grid_inference_maps():
    """#27 item 7: one rule for the grid. A model trained on tiles maps its input size
    without overlap (a 96 x 128 photo at 32 px: 3 x 4), not at half stride (5 x 7)."""
    from models.inference import inspection_grid

    ckpt = random_checkpoint()
    assert ckpt.tile_px is None and ckpt.input_size == 32
    every = survey_tiles(photos(1), ckpt, 1000)
    assert every.shape[0] == len(inspection_grid(ckpt, 96, 128)) == 12
