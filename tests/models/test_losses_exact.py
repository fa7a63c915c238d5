"""The exact expected GM loss and the logit-space sampler, pinned in float64.

The reference expectations are randomised quasi-Monte Carlo means over sampled
*features* (ã = a + √λ L ε, L the Cholesky factor of the full Σ_y, then z̃ = W ã + b):
2²⁰ scrambled-Sobol draws in F dimensions, in 8 independent scrambles, whose spread
gives the reference's own standard error. Nothing in the reference uses the C x C
tables or the quadrature rules under test.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from models.losses import (
    IGMSDAExactLoss,
    class_logit_covariance,
    class_pair_covariance,
    class_pair_quadratic,
    gaussian_rule,
    gm_expected_loss,
    gm_loss,
    gm_sampled_loss,
    igmsda_loss,
)
from models.losses.gm import augmented_logit_factor

D = torch.float64


def problem(n: int, c: int, f: int, seed: int, scale: float = 2.0, diagonal: bool = False):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, f, generator=g, dtype=D)
    y = torch.arange(n) % c
    w = scale * torch.randn(c, f, generator=g, dtype=D) / math.sqrt(f)
    b = 0.1 * torch.randn(c, generator=g, dtype=D)
    if diagonal:
        return x, y, w, b, torch.rand(c, f, generator=g, dtype=D) + 0.1
    root = torch.randn(c, f, f, generator=g, dtype=D) / math.sqrt(f)
    return x, y, w, b, root @ root.transpose(1, 2) + 0.05 * torch.eye(f, dtype=D)


def feature_space_logits(x, y, w, b, cov, lam, eps):
    """z̃ = W (a + √λ L_y ε) + b for (S, F) standard-normal draws ε; returns (N, S, C)."""
    full = cov if cov.dim() == 3 else torch.diag_embed(cov)
    chol = torch.linalg.cholesky(full)[y]  # (N, F, F)
    noise = math.sqrt(lam) * torch.einsum("nfg,sg->nsf", chol, eps)
    return (x.unsqueeze(1) + noise) @ w.T + b


def gm_of(z, y, alpha):
    log_pt = F.log_softmax(z, -1).gather(-1, y.view(-1, 1, 1).expand(*z.shape[:2], 1)).squeeze(-1)
    return -log_pt - 0.5 * math.log(alpha) + 0.5 * torch.log1p(alpha * log_pt.exp())


def rqmc_mean(fn, f: int, scrambles: int = 8, log2_points: int = 17):
    """Mean of fn(ε) over 8 x 2¹⁷ scrambled-Sobol normal draws, and its standard error."""
    estimates = []
    for r in range(scrambles):
        engine = torch.quasirandom.SobolEngine(f, scramble=True, seed=7000 + r)
        eps = math.sqrt(2.0) * torch.erfinv(2 * engine.draw(1 << log2_points, dtype=D) - 1)
        estimates.append(fn(eps).mean(1))
    stacked = torch.stack(estimates)
    return stacked.mean(0), stacked.std(0) / math.sqrt(scrambles)


# ---------------------------------------------------------------- against Monte Carlo


@pytest.mark.parametrize("c", [2, 3])
@pytest.mark.parametrize("lam", [0.5, 2.5, 7.5])
@pytest.mark.parametrize("diagonal", [False, True])
def test_expected_loss_matches_monte_carlo_to_1e_4(c, lam, diagonal):
    x, y, w, b, cov = problem(6, c, 5, seed=c + 10 * diagonal, diagonal=diagonal)
    alpha = 2.5
    mc, stderr = rqmc_mean(
        lambda e: gm_of(feature_space_logits(x, y, w, b, cov, lam, e), y, alpha), 5
    )
    assert bool((stderr < 2.5e-5 * mc).all()), "the reference itself is too noisy to decide"
    got = gm_expected_loss(x, y, w, b, cov, lam, alpha, reduction="none")
    rel = ((got - mc) / mc).abs()
    assert bool((rel < 1e-4).all()), rel


@pytest.mark.parametrize("c", [4, 5])
def test_expected_loss_beyond_three_classes_matches_monte_carlo(c):
    x, y, w, b, cov = problem(6, c, 5, seed=c)
    lam, alpha = 2.5, 2.0
    mc, _ = rqmc_mean(lambda e: gm_of(feature_space_logits(x, y, w, b, cov, lam, e), y, alpha), 5)
    got = gm_expected_loss(x, y, w, b, cov, lam, alpha, reduction="none")
    assert bool((((got - mc) / mc).abs() < 5e-4).all())


def test_mean_exponential_margin_identity():
    """E exp(z̃_j − z̃_y) = exp(z_j − z_y + λ q_j / 2): the moment behind ISDA's Part I."""
    x, y, w, b, cov = problem(6, 3, 5, seed=3, scale=1.0)
    lam = 1.5
    z = x @ w.T + b
    want = torch.exp(z - z.gather(1, y[:, None]) + 0.5 * lam * class_pair_quadratic(w, cov)[y])

    def exp_margins(eps):
        zt = feature_space_logits(x, y, w, b, cov, lam, eps)
        return torch.exp(zt - zt.gather(2, y.view(-1, 1, 1).expand(*zt.shape[:2], 1)))

    mc, stderr = rqmc_mean(exp_margins, 5)
    assert bool(((mc - want).abs() <= 5 * stderr + 1e-12).all())
    # The same moment through the margins' covariance table and the fixed rule, for C = 2.
    x2, y2, w2, b2, cov2 = problem(4, 2, 5, seed=4, scale=1.0)
    q = class_pair_quadratic(w2, cov2)[y2, 1 - y2]
    m = (x2 @ w2.T + b2).gather(1, (1 - y2)[:, None]).squeeze(1) - (x2 @ w2.T + b2).gather(
        1, y2[:, None]
    ).squeeze(1)
    points, weights = gaussian_rule(1)
    by_rule = torch.exp(m[:, None] + (lam * q).sqrt()[:, None] * points[:, 0]) @ weights
    torch.testing.assert_close(by_rule, torch.exp(m + 0.5 * lam * q), rtol=1e-12, atol=0)


# ---------------------------------------------------------------- relations to the other losses


def test_zero_lam_is_exactly_the_gm_loss():
    for c in (2, 3, 5):
        x, y, w, b, cov = problem(20, c, 6, seed=c, scale=4.0)
        got = gm_expected_loss(x, y, w, b, cov, 0.0, 3.0, reduction="none")
        torch.testing.assert_close(got, gm_loss(x @ w.T + b, y, 3.0, reduction="none"))


@pytest.mark.parametrize("seed", range(6))
def test_never_above_the_closed_form_bound(seed):
    c = 2 + seed % 3
    g = torch.Generator().manual_seed(seed)
    lam = float(torch.rand(1, generator=g)) * 7.5
    alpha = 1.0 + float(torch.rand(1, generator=g)) * 9.0
    x, y, w, b, cov = problem(64, c, 6, seed=100 + seed, scale=1.0 + seed)
    exact = gm_expected_loss(x, y, w, b, cov, lam, alpha, reduction="none")
    bound = igmsda_loss(x, y, w, b, cov, lam, alpha, reduction="none")
    assert bool((exact <= bound + 1e-12).all())


def test_no_floor_the_loss_keeps_falling_with_the_margin():
    w = torch.eye(2, dtype=D)
    cov = torch.eye(2, dtype=D).expand(2, 2, 2).contiguous()
    margins = torch.tensor([0.0, 2.0, 5.0, 10.0, 20.0], dtype=D)
    x = torch.stack([margins, torch.zeros_like(margins)], 1)
    y = torch.zeros(5, dtype=torch.int64)
    exact = gm_expected_loss(x, y, w, None, cov, 0.5, 3.5, reduction="none")
    # L_g itself tends to ½ log(1 + 1/α) as p_t -> 1, never to a floor above it.
    assert bool((exact.diff() < 0).all())
    assert exact[-1].item() == pytest.approx(0.5 * math.log1p(1 / 3.5), abs=1e-8)
    closed = igmsda_loss(x, y, w, None, cov, 0.5, 3.5, reduction="none")
    assert closed[-1] > closed[1]  # the closed form's minimum is at a finite margin


# ---------------------------------------------------------------- gradients, dtypes, module


@pytest.mark.parametrize("c", [2, 3, 4])
@pytest.mark.parametrize("diagonal", [False, True])
def test_gradients_match_finite_differences(c, diagonal):
    x, y, w, b, cov = problem(5, c, 4, seed=30 + c, diagonal=diagonal)
    inputs = tuple(t.clone().requires_grad_(True) for t in (x, w, b))
    assert torch.autograd.gradcheck(
        lambda xx, ww, bb: gm_expected_loss(xx, y, ww, bb, cov, 1.5, 2.5),
        inputs,
        eps=1e-6,
        atol=1e-7,
        rtol=1e-5,
    )


def test_half_precision_and_autocast_stay_float32():
    x, y, w, b, cov = problem(8, 3, 4, seed=60)
    loss = gm_expected_loss(x.bfloat16(), y, w.float(), b.float(), cov.float(), 1.0, 2.0)
    assert loss.dtype == torch.float32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = gm_expected_loss(x.float(), y, w.float(), b.float(), cov.float(), 1.0, 2.0)
    assert inside.dtype == torch.float32
    want = gm_expected_loss(x, y, w, b, cov, 1.0, 2.0)
    assert abs(inside.item() - want.item()) < 1e-5 * want.item()


def test_float32_is_finite_for_extreme_margins():
    w = torch.zeros(3, 4)
    w[0, 0] = 1.0
    x = torch.zeros(6, 4)
    x[:, 0] = torch.tensor([-80.0, -30.0, 0.0, 30.0, 80.0, 200.0])
    x.requires_grad_(True)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    cov = torch.eye(4).expand(3, 4, 4).contiguous()
    loss = gm_expected_loss(x, y, w, None, cov, 7.5, 3.5)
    (grad,) = torch.autograd.grad(loss, x)
    assert torch.isfinite(loss) and bool(torch.isfinite(grad).all())


def test_identical_class_weights_give_finite_gradients():
    x, y, _, _, cov = problem(6, 2, 3, seed=61)
    w = torch.ones(2, 3, dtype=D, requires_grad=True)  # q = 0: no augmentation to integrate
    loss = gm_expected_loss(x, y, w, None, cov, 1.0, 2.0)
    (grad,) = torch.autograd.grad(loss, w)
    assert bool(torch.isfinite(grad).all())


def test_module_applies_the_igmsda_schedules_and_keeps_its_estimator():
    x, y, w, b, _ = problem(16, 3, 5, seed=80)
    head = torch.nn.Linear(5, 3).double()
    loss_fn = IGMSDAExactLoss(3, 5, lam0=7.5, alpha0=2.5).double()
    loss = loss_fn(x, y, head, progress=0.4)
    want = gm_expected_loss(
        x, y, head.weight, head.bias, loss_fn.estimator.cov, 0.4 * 7.5, 0.4 * 2.5 + 1
    )
    torch.testing.assert_close(loss, want)
    assert int(loss_fn.estimator.count.sum()) == 16
    assert loss_fn.hparams() == {"lam0": 7.5, "alpha0": 2.5}
    assert {"estimator.count", "estimator.mean", "estimator.cov"} <= set(loss_fn.state_dict())


# ---------------------------------------------------------------- the logit-space sampler


@pytest.mark.parametrize("diagonal", [False, True])
def test_logit_and_feature_samplers_agree_in_distribution(diagonal):
    """Both samplers draw z̃ ~ N(z, λ W Σ_y Wᵀ): equal means and covariances, and loss."""
    x, y, w, b, cov = problem(4, 3, 6, seed=90, diagonal=diagonal)
    lam, samples = 2.0, 200_000
    g = torch.Generator().manual_seed(1)
    by_features = feature_space_logits(
        x, y, w, b, cov, lam, torch.randn(samples, 6, generator=g, dtype=D)
    )
    factor = augmented_logit_factor(w, cov)[y] * math.sqrt(lam)  # (N, C, C)
    eps = torch.randn(4, samples, 3, generator=g, dtype=D)
    by_logits = (x @ w.T + b).unsqueeze(1) + eps @ factor.transpose(1, 2)
    want_cov = lam * class_logit_covariance(w, cov)[y]
    for z in (by_features, by_logits):
        centred = z - z.mean(1, keepdim=True)
        emp = centred.transpose(1, 2) @ centred / samples
        torch.testing.assert_close(emp, want_cov, rtol=0, atol=0.03 * float(want_cov.abs().max()))
        torch.testing.assert_close(z.mean(1), x @ w.T + b, rtol=0, atol=0.02)
    loss_f = gm_of(by_features, y, 2.5).mean(1)
    loss_l = gm_of(by_logits, y, 2.5).mean(1)
    stderr = gm_of(by_logits, y, 2.5).std(1) / math.sqrt(samples)
    assert bool(((loss_f - loss_l).abs() <= 5 * math.sqrt(2) * stderr).all())


def test_sampled_gm_converges_to_the_exact_expectation():
    x, y, w, b, cov = problem(8, 3, 5, seed=91)
    exact = gm_expected_loss(x, y, w, b, cov, 2.0, 3.0, reduction="none")
    g = torch.Generator().manual_seed(2)
    sampled = gm_sampled_loss(x, y, w, b, cov, 2.0, 3.0, 100_000, generator=g, reduction="none")
    assert bool(((sampled - exact).abs() < 0.01 * exact).all())


def test_margin_table_holds_the_quadratic_table_on_its_diagonal():
    _, _, w, _, cov = problem(4, 4, 5, seed=92)
    table = class_pair_covariance(w, cov)
    torch.testing.assert_close(table.diagonal(dim1=1, dim2=2), class_pair_quadratic(w, cov))
    for yy in range(4):
        d = w - w[yy]
        torch.testing.assert_close(table[yy], d @ cov[yy] @ d.T)
