"""The maths of the IGMSDA loss family, pinned in float64 (IGMSDA.md, "Properties")."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from models.losses import (
    GMSampledLoss,
    IGMSDALoss,
    ISDALoss,
    class_pair_quadratic,
    focal_loss,
    gm_loss,
    gm_sampled_loss,
    igmsda_loss,
    isda_loss,
)

D = torch.float64


def random_problem(n: int, c: int, f: int, seed: int, diagonal: bool = False, scale: float = 1.0):
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(n, f, generator=g, dtype=D)
    labels = torch.randint(0, c, (n,), generator=g)
    labels[:c] = torch.arange(c)  # every class present
    weight = scale * torch.randn(c, f, generator=g, dtype=D) / math.sqrt(f)
    bias = 0.1 * torch.randn(c, generator=g, dtype=D)
    if diagonal:
        cov = torch.rand(c, f, generator=g, dtype=D) + 0.1
    else:
        root = torch.randn(c, f, f, generator=g, dtype=D) / math.sqrt(f)
        cov = root @ root.transpose(1, 2) + 0.05 * torch.eye(f, dtype=D)
    return features, labels, weight, bias, cov


def sample_augmented_logits(features, labels, weight, bias, cov, lam, samples, seed):
    """Independent Monte Carlo: ã = a + √λ L ε with a full Cholesky factor, then z̃ = W ã + b."""
    g = torch.Generator().manual_seed(seed)
    full = cov if cov.dim() == 3 else torch.diag_embed(cov)
    chol = torch.linalg.cholesky(full)  # (C, F, F)
    eps = torch.randn(features.shape[0], samples, features.shape[1], generator=g, dtype=D)
    noise = torch.einsum("nfg,nsg->nsf", chol[labels], eps)  # (N, S, F)
    aug = features.unsqueeze(1) + math.sqrt(lam) * noise
    return aug @ weight.T + bias  # (N, S, C)


def gm_of_logits(logits, labels, alpha):
    log_pt = F.log_softmax(logits, -1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    return -log_pt - 0.5 * math.log(alpha) + 0.5 * torch.log1p(alpha * log_pt.exp())


# ---------------------------------------------------------------- λ = 0 equalities


@pytest.mark.parametrize("c", [2, 3, 5])
@pytest.mark.parametrize("diagonal", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_isda_with_zero_lam_is_cross_entropy(c, diagonal, reduction):
    x, y, w, b, cov = random_problem(33, c, 7, seed=c, diagonal=diagonal, scale=3.0)
    got = isda_loss(x, y, w, b, cov, lam=0.0, reduction=reduction)
    want = F.cross_entropy(x @ w.T + b, y, reduction=reduction)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("c", [2, 3])
def test_gm_sampled_with_zero_lam_is_exact_gm(c):
    x, y, w, b, cov = random_problem(20, c, 6, seed=1)
    got = gm_sampled_loss(x, y, w, b, cov, lam=0.0, alpha=2.0, samples=5, reduction="none")
    want = gm_loss(x @ w.T + b, y, alpha=2.0, reduction="none")
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_gm_loss_matches_its_definition():
    x, y, w, b, _ = random_problem(40, 3, 5, seed=2, scale=4.0)
    logits = x @ w.T + b
    pt = F.softmax(logits, 1).gather(1, y[:, None]).squeeze(1)
    alpha = 3.5
    want = -0.5 * torch.log(pt * alpha * pt / (alpha * pt + 1))
    torch.testing.assert_close(gm_loss(logits, y, alpha, reduction="none"), want)


def test_focal_with_zero_gamma_is_cross_entropy_and_matches_definition():
    x, y, w, b, _ = random_problem(30, 4, 5, seed=3, scale=3.0)
    logits = x @ w.T + b
    torch.testing.assert_close(focal_loss(logits, y, gamma=0.0), F.cross_entropy(logits, y))
    pt = F.softmax(logits, 1).gather(1, y[:, None]).squeeze(1)
    want = -((1 - pt) ** 2.0) * torch.log(pt)
    torch.testing.assert_close(focal_loss(logits, y, gamma=2.0, reduction="none"), want)


@pytest.mark.parametrize("c", [2, 3, 4])
def test_igmsda_with_zero_lam_bounds_exact_gm(c):
    x, y, w, b, cov = random_problem(200, c, 5, seed=4, scale=8.0)
    bound = igmsda_loss(x, y, w, b, cov, lam=0.0, alpha=2.5, reduction="none")
    exact = gm_loss(x @ w.T + b, y, alpha=2.5, reduction="none")
    assert bool((bound >= exact - 1e-12).all())


# ---------------------------------------------------------------- bounds vs Monte Carlo


@pytest.mark.parametrize("c", [2, 3])
@pytest.mark.parametrize("diagonal", [False, True])
@pytest.mark.parametrize("lam", [0.5, 2.5, 7.5])
def test_bounds_hold_against_monte_carlo(c, diagonal, lam):
    x, y, w, b, cov = random_problem(12, c, 6, seed=10 + c, diagonal=diagonal, scale=2.0)
    samples = 20_000
    z = sample_augmented_logits(x, y, w, b, cov, lam, samples, seed=99)  # (N, S, C)
    yy = y.unsqueeze(1).expand(-1, samples)
    ce = F.cross_entropy(z.reshape(-1, c), yy.reshape(-1), reduction="none").view(-1, samples)
    alpha = 2.5
    gm = gm_of_logits(z, yy, alpha)
    for mc, bound in (
        (ce, isda_loss(x, y, w, b, cov, lam, reduction="none")),
        (gm, igmsda_loss(x, y, w, b, cov, lam, alpha, reduction="none")),
    ):
        mean = mc.mean(1)
        stderr = mc.std(1) / math.sqrt(samples)
        # The bound must exceed the expectation; allow 5 standard errors of MC noise.
        assert bool((bound >= mean - 5 * stderr - 1e-12).all()), (bound - mean) / stderr


def test_gm_sampled_agrees_with_independent_monte_carlo():
    x, y, w, b, cov = random_problem(10, 3, 5, seed=21, scale=2.0)
    lam, alpha, samples = 2.0, 3.0, 20_000
    g = torch.Generator().manual_seed(5)
    got = gm_sampled_loss(x, y, w, b, cov, lam, alpha, samples, generator=g, reduction="none")
    z = sample_augmented_logits(x, y, w, b, cov, lam, samples, seed=6)
    gm = gm_of_logits(z, y.unsqueeze(1).expand(-1, samples), alpha)
    stderr = gm.std(1) / math.sqrt(samples)
    assert bool(((got - gm.mean(1)).abs() <= 5 * math.sqrt(2) * stderr + 1e-9).all())


def test_gm_sampled_handles_singular_covariance():
    x, y, w, b, _ = random_problem(8, 2, 6, seed=7)
    v = torch.randn(2, 6, 1, dtype=D)
    cov = v @ v.transpose(1, 2)  # rank 1
    loss = gm_sampled_loss(
        x, y, w, b, cov, 1.0, 2.0, 50, generator=torch.Generator().manual_seed(0)
    )
    assert torch.isfinite(loss)


# ---------------------------------------------------------------- gradients


def _gradcheck(fn, *tensors):
    inputs = tuple(t.clone().requires_grad_(True) for t in tensors)
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("diagonal", [False, True])
@pytest.mark.parametrize("c", [2, 3])
def test_gradients_match_finite_differences(diagonal, c):
    x, y, w, b, cov = random_problem(6, c, 4, seed=30 + c, diagonal=diagonal, scale=2.0)
    _gradcheck(lambda xx, ww, bb: isda_loss(xx, y, ww, bb, cov, 1.5), x, w, b)
    _gradcheck(lambda xx, ww, bb: igmsda_loss(xx, y, ww, bb, cov, 1.5, 2.5), x, w, b)
    _gradcheck(
        lambda xx, ww, bb: gm_sampled_loss(
            xx, y, ww, bb, cov, 1.5, 2.5, 7, generator=torch.Generator().manual_seed(3)
        ),
        x,
        w,
        b,
    )
    logits = x @ w.T + b
    _gradcheck(lambda z: gm_loss(z, y, 2.5), logits)
    _gradcheck(lambda z: focal_loss(z, y, 2.0), logits)


def test_gm_gradient_is_modulated_not_flipped():
    logits = torch.tensor([[0.3, -0.2], [2.0, 1.0]], dtype=D, requires_grad=True)
    y = torch.tensor([0, 1])
    alpha = 2.5
    gm_loss(logits, y, alpha, reduction="sum").backward()
    g_gm = logits.grad.clone()
    logits.grad = None
    F.cross_entropy(logits, y, reduction="sum").backward()
    g_ce = logits.grad
    assert bool((torch.sign(g_gm) == torch.sign(g_ce)).all())
    assert bool((g_gm.abs() < g_ce.abs()).all())


def test_part_two_gradient_on_true_logit_tends_to_half():
    z = torch.tensor([[40.0, 0.0]], dtype=D, requires_grad=True)
    y = torch.tensor([0])
    w = torch.eye(2, dtype=D)
    loss = igmsda_loss(z, y, w, None, torch.zeros(2, 2, dtype=D), lam=0.0, alpha=2.0)
    loss.backward()
    assert z.grad[0, 0].item() == pytest.approx(0.5, abs=1e-6)


# ---------------------------------------------------------------- the quadratic table


@pytest.mark.parametrize("diagonal", [False, True])
def test_quadratic_table_matches_per_sample_definition(diagonal):
    _, _, w, _, cov = random_problem(4, 4, 5, seed=40, diagonal=diagonal)
    full = cov if not diagonal else torch.diag_embed(cov)
    table = class_pair_quadratic(w, cov)
    for yy in range(4):
        for j in range(4):
            d = w[j] - w[yy]
            assert table[yy, j].item() == pytest.approx((d @ full[yy] @ d).item(), rel=1e-12)
    assert torch.all(table.diagonal() == 0)


@pytest.mark.parametrize("fn", ["isda", "igmsda", "gm_sampled"])
def test_diagonal_form_equals_full_form_on_diagonal_matrix(fn):
    x, y, w, b, var = random_problem(15, 3, 6, seed=50, diagonal=True)
    full = torch.diag_embed(var)
    if fn == "isda":
        a, c = isda_loss(x, y, w, b, var, 2.0), isda_loss(x, y, w, b, full, 2.0)
    elif fn == "igmsda":
        a, c = igmsda_loss(x, y, w, b, var, 2.0, 3.0), igmsda_loss(x, y, w, b, full, 2.0, 3.0)
    else:
        x2 = (x, y, w, b)
        a = gm_sampled_loss(*x2, var, 2.0, 3.0, 4000, generator=torch.Generator().manual_seed(1))
        c = gm_sampled_loss(*x2, full, 2.0, 3.0, 4000, generator=torch.Generator().manual_seed(2))
        torch.testing.assert_close(a, c, rtol=0, atol=5e-3)
        return
    torch.testing.assert_close(a, c, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- float32 stability


@pytest.mark.parametrize("margin", [-80.0, -30.0, 0.0, 30.0, 80.0])
@pytest.mark.parametrize("c", [2, 3])
def test_float32_values_stay_finite_for_large_margins(margin, c):
    f = 4
    w = torch.zeros(c, f)
    w[0, 0] = 1.0  # z_0 = a_0, other logits 0
    x = torch.zeros(8, f)
    x[:, 0] = margin
    x.requires_grad_(True)
    y = torch.zeros(8, dtype=torch.int64)
    y[4:] = 1
    cov = torch.eye(f).expand(c, f, f).contiguous()
    logits = x @ w.T
    for loss in (
        isda_loss(x, y, w, None, cov, 7.5),
        igmsda_loss(x, y, w, None, cov, 7.5, 3.5),
        gm_loss(logits, y, 3.5),
        focal_loss(logits, y),
        gm_sampled_loss(x, y, w, None, cov, 7.5, 3.5, 10),
    ):
        (grad,) = torch.autograd.grad(loss, x, retain_graph=True)
        assert torch.isfinite(loss) and bool(torch.isfinite(grad).all())


def test_half_precision_inputs_are_computed_in_float32():
    x, y, w, b, cov = random_problem(8, 2, 4, seed=60)
    loss = igmsda_loss(x.bfloat16(), y, w.float(), b.float(), cov.float(), 1.0, 2.0)
    assert loss.dtype == torch.float32


# ---------------------------------------------------------------- invalid arguments


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"lam": -1.0}, "lam"),
        ({"alpha": 0.0}, "alpha"),
        ({"alpha": -2.0}, "alpha"),
        ({"reduction": "median"}, "reduction"),
    ],
)
def test_invalid_scalars_raise_value_error(kwargs, message):
    x, y, w, b, cov = random_problem(5, 2, 3, seed=70)
    args = {"lam": 1.0, "alpha": 2.0, "reduction": "mean"} | kwargs
    with pytest.raises(ValueError, match=message):
        igmsda_loss(x, y, w, b, cov, **args)


def test_shape_mismatches_raise_value_error():
    x, y, w, b, cov = random_problem(5, 2, 3, seed=71)
    with pytest.raises(ValueError, match="features"):
        isda_loss(x[:, :2], y, w, b, cov, 1.0)
    with pytest.raises(ValueError, match="labels"):
        isda_loss(x, y[:3], w, b, cov, 1.0)
    with pytest.raises(ValueError, match="class_cov"):
        isda_loss(x, y, w, b, cov[:, :2], 1.0)
    with pytest.raises(ValueError, match="bias"):
        isda_loss(x, y, w, b[:1], cov, 1.0)
    with pytest.raises(ValueError, match="labels must lie"):
        isda_loss(x, y + 5, w, b, cov, 1.0)
    with pytest.raises(ValueError, match="int64"):
        gm_loss(x @ w.T, y.int(), 2.0)
    with pytest.raises(ValueError, match="samples"):
        gm_sampled_loss(x, y, w, b, cov, 1.0, 2.0, 0)
    with pytest.raises(ValueError, match="2 classes"):
        focal_loss(torch.zeros(3, 1), torch.zeros(3, dtype=torch.int64))


# ---------------------------------------------------------------- modules


@pytest.mark.parametrize("cls", [ISDALoss, IGMSDALoss, GMSampledLoss])
def test_loss_modules_update_estimator_and_apply_schedules(cls):
    x, y, w, b, _ = random_problem(16, 3, 5, seed=80)
    head = torch.nn.Linear(5, 3).double()
    with torch.no_grad():
        head.weight.copy_(w)
        head.bias.copy_(b)
    loss_fn = cls(3, 5).double()
    loss = loss_fn(x, y, head, progress=0.0)
    # At t = 0, λ = 0 and α = 1: ISDA is CE, sampled GM is exact GM with α = 1,
    # and IGMSDA is its closed form at λ = 0, α = 1.
    logits = head(x)
    if cls is ISDALoss:
        want = F.cross_entropy(logits, y)
    elif cls is GMSampledLoss:
        want = gm_loss(logits, y, 1.0)
    else:
        want = igmsda_loss(x, y, head.weight, head.bias, loss_fn.estimator.cov, 0.0, 1.0)
    torch.testing.assert_close(loss, want)
    assert int(loss_fn.estimator.count.sum()) == 16
    state = loss_fn.state_dict()
    assert {"estimator.count", "estimator.mean", "estimator.cov"} <= set(state)
    assert loss_fn.hparams()["lam0"] == 0.5
    with pytest.raises(ValueError, match="progress"):
        loss_fn(x, y, head, progress=1.5)


def test_igmsda_module_uses_scheduled_values():
    x, y, w, b, _ = random_problem(16, 2, 4, seed=81)
    head = torch.nn.Linear(4, 2).double()
    loss_fn = IGMSDALoss(2, 4, lam0=7.5, alpha0=2.5).double()
    loss = loss_fn(x, y, head, progress=0.4)
    want = igmsda_loss(
        x, y, head.weight, head.bias, loss_fn.estimator.cov, 0.4 * 7.5, 0.4 * 2.5 + 1
    )
    torch.testing.assert_close(loss, want)
    assert loss_fn.hparams() == {"lam0": 7.5, "alpha0": 2.5}


# ---------------------------------------------------------------- two-sided pins


def spec_isda_igmsda(x, y, w, b, cov, lam, alpha):
    """IGMSDA.md's formulas transcribed term by term, one tile and one class at a time."""
    full = cov if cov.dim() == 3 else torch.diag_embed(cov)
    c = w.shape[0]
    isda, igm = [], []
    for i in range(x.shape[0]):
        yi = int(y[i])
        z = [float(w[j] @ x[i] + b[j]) for j in range(c)]
        q = [float((w[j] - w[yi]) @ full[yi] @ (w[j] - w[yi])) for j in range(c)]
        part1 = math.log(sum(math.exp(z[j] - z[yi] + lam / 2 * q[j]) for j in range(c)))
        inner = sum(math.exp(z[yi] - z[j] + lam / 2 * q[j]) for j in range(c))
        part2 = 0.5 * math.log(1 + alpha / c**2 * inner)
        isda.append(part1)
        igm.append(-0.5 * math.log(alpha) + part1 + part2)
    return torch.tensor(isda, dtype=D), torch.tensor(igm, dtype=D)


@pytest.mark.parametrize("c", [2, 3, 5])
@pytest.mark.parametrize("diagonal", [False, True])
@pytest.mark.parametrize("lam, alpha", [(0.0, 1.0), (0.5, 2.5), (7.5, 3.5)])
def test_isda_and_igmsda_equal_the_spec_transcription(c, diagonal, lam, alpha):
    x, y, w, b, cov = random_problem(9, c, 5, seed=200 + c, diagonal=diagonal, scale=2.0)
    want_isda, want_igm = spec_isda_igmsda(x, y, w, b, cov, lam, alpha)
    got_isda = isda_loss(x, y, w, b, cov, lam, reduction="none")
    got_igm = igmsda_loss(x, y, w, b, cov, lam, alpha, reduction="none")
    torch.testing.assert_close(got_isda, want_isda, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(got_igm, want_igm, rtol=1e-10, atol=1e-12)
