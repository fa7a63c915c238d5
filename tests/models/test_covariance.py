"""The online class-covariance estimator against a two-pass computation (float64)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

from models.losses import ClassCovariance

D = torch.float64


def two_pass(features: torch.Tensor, labels: torch.Tensor, c: int):
    f = features.shape[1]
    means, covs, counts = torch.zeros(c, f, dtype=D), torch.zeros(c, f, f, dtype=D), []
    for k in range(c):
        rows = features[labels == k]
        counts.append(rows.shape[0])
        if rows.shape[0]:
            means[k] = rows.mean(0)
            centred = rows - means[k]
            covs[k] = centred.T @ centred / rows.shape[0]
    return torch.tensor(counts), means, covs


@pytest.mark.parametrize("c", [2, 3, 5])
def test_estimator_equals_two_pass_biased_covariance(c):
    g = torch.Generator().manual_seed(c)
    est = ClassCovariance(c, 6, dtype=D)
    diag = ClassCovariance(c, 6, diagonal=True, dtype=D)
    seen_x, seen_y = [], []
    for size in [1, 7, 2, 30, 3, 64, 5, 1, 17]:
        x = 3 * torch.randn(size, 6, generator=g, dtype=D) + torch.arange(6, dtype=D)
        # Only the first two classes early on: the rest are absent from those batches.
        high = 2 if len(seen_x) < 3 else c
        y = torch.randint(0, high, (size,), generator=g)
        x = x + y.unsqueeze(1).to(D)  # class-dependent shift
        est.update(x, y)
        diag.update(x, y)
        seen_x.append(x)
        seen_y.append(y)
        counts, means, covs = two_pass(torch.cat(seen_x), torch.cat(seen_y), c)
        assert torch.equal(est.count, counts)
        torch.testing.assert_close(est.mean, means, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(est.cov, covs, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(diag.cov, covs.diagonal(dim1=1, dim2=2), rtol=1e-10, atol=1e-12)


def test_estimator_state_follows_state_dict_and_to():
    est = ClassCovariance(2, 3)
    est.update(torch.randn(10, 3), torch.tensor([0, 1] * 5))
    fresh = ClassCovariance(2, 3)
    fresh.load_state_dict(est.state_dict())
    torch.testing.assert_close(fresh.cov, est.cov)
    moved = fresh.to(D)
    assert moved.cov.dtype == D and moved.count.dtype == torch.int64


def test_estimator_ignores_gradients_and_rejects_bad_shapes():
    est = ClassCovariance(2, 3)
    x = torch.randn(4, 3, requires_grad=True)
    est.update(x, torch.tensor([0, 1, 0, 1]))
    assert not est.cov.requires_grad
    with pytest.raises(ValueError, match="features"):
        est.update(torch.randn(4, 2), torch.tensor([0, 1, 0, 1]))
    with pytest.raises(ValueError, match="labels"):
        est.update(torch.randn(4, 3), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="num_classes"):
        ClassCovariance(1, 3)


@pytest.mark.slow
def peak_rss_growth_mib(setup: str, step: str) -> int:
    """Peak RSS growth (MiB) of `step` in a fresh process, from a baseline after `setup`."""
    script = textwrap.dedent(
        f"""
        import torch
        def peak():  # VmHWM: this address space's peak (ru_maxrss keeps the parent's after exec)
            for line in open("/proc/self/status"):
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) // 1024
        {setup}
        before = peak()
        {step}
        print(peak() - before)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1])


def test_class_pair_term_never_builds_an_n_by_c_by_f_by_f_tensor():
    """Peak RSS over the first loss steps, from a baseline taken before them (a warm-up of
    the same code before the baseline would hide any growth). A control that allocates
    1 GiB the same way shows the measurement sees what it is looking for."""
    # An N x C x F x F float32 tensor at N = 64, C = 2, F = 2048 would be 2 GiB.
    control = peak_rss_growth_mib("", "x = torch.ones(256 << 20)")
    # (less than 1024: the baseline peak includes what importing torch briefly held)
    assert control > 600, f"the RSS measurement missed a 1 GiB allocation ({control} MiB)"
    setup = (
        "from models.losses import IGMSDALoss; torch.manual_seed(0); n, c, f = 64, 2, 2048; "
        "head = torch.nn.Linear(f, c); loss_fn = IGMSDALoss(c, f); "
        "x = torch.randn(n, f, requires_grad=True); y = torch.arange(n) % c"
    )
    step = "for _ in range(3): loss_fn(x, y, head, 0.5).backward()"
    growth_mib = peak_rss_growth_mib(setup, step)
    assert growth_mib < 400, f"peak RSS grew by {growth_mib} MiB"
