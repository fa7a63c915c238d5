"""A survey's class prior, estimated without labels, and thresholds that follow it.

A model calibrated on its validation split gives p_s(y | x) under the training prior π_s.
On a survey with prior π_t (fewer cracks, say) Bayes' rule gives

    p_t(y | x) = p_s(y | x) · π_t(y) / π_s(y) / Σ_c p_s(c | x) · π_t(c) / π_s(c)

and π_t is the fixed point of π_t(y) = mean over the survey's tiles of p_t(y | x): the EM
of Saerens, Latinne and Decaestecker (Neural Computation 14(1), 2002).
"""

from __future__ import annotations

import torch


def em_prior(
    probs: torch.Tensor, source_prior: torch.Tensor, iterations: int = 100, tol: float = 1e-8
) -> tuple[torch.Tensor, torch.Tensor]:
    """The survey's prior and the posteriors under it (module docstring).

    Args:
        probs: (N, C) calibrated probabilities under the source prior.
        source_prior: (C,) π_s, positive, summing to 1.

    Returns:
        ((C,) π_t, (N, C) p_t(y | x)), float64.
    """
    p = probs.to(torch.float64)
    prior_s = source_prior.to(torch.float64)
    if p.ndim != 2 or prior_s.shape != (p.shape[1],):
        raise ValueError(
            f"probs must be (N, C) and source_prior (C,), got {p.shape}, {prior_s.shape}"
        )
    if bool((prior_s <= 0).any()):
        raise ValueError("every class of the source prior must be > 0")
    prior_s = prior_s / prior_s.sum()
    prior_t = prior_s.clone()
    adjusted = p
    for _ in range(iterations):
        weighted = p * (prior_t / prior_s)
        adjusted = weighted / weighted.sum(1, keepdim=True).clamp_min(1e-300)
        new = adjusted.mean(0)
        if float((new - prior_t).abs().max()) < tol:
            prior_t = new
            break
        prior_t = new
    return prior_t, adjusted


def expected_f1_threshold(score: torch.Tensor) -> float:
    """The threshold that maximises the F1 a calibrated model expects of itself.

    Flagging the k highest of the N scores p_i (P(defect) of each tile) expects
    TP_k = Σ_{i ≤ k} p_(i) true positives among k flags and Σ_i p_i defects, so
    E-F1(k) ≈ 2 TP_k / (k + Σ_i p_i). The cut lies midway between the k-th and the
    (k+1)-th score of the best k.

    Args:
        score: (N,) defect probabilities in [0, 1].
    """
    s = torch.sort(score.to(torch.float64).flatten(), descending=True).values
    if s.numel() == 0 or float(s.sum()) == 0.0:
        return 1.0
    tp = torch.cumsum(s, 0)
    k = torch.arange(1, s.numel() + 1, dtype=torch.float64)
    best = int(torch.argmax(2 * tp / (k + s.sum())))
    below = float(s[best + 1]) if best + 1 < s.numel() else 0.0
    return (float(s[best]) + below) / 2


def rate_matched_threshold(score: torch.Tensor, rate: float) -> float:
    """The threshold that flags the share `rate` of the scores (ties kept together).

    Args:
        score: (N,) defect probabilities.  rate: in [0, 1].
    """
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"rate must lie in [0, 1], got {rate}")
    s = torch.sort(score.to(torch.float64).flatten(), descending=True).values
    k = round(rate * s.numel())
    if k <= 0:
        return float(s[0]) + 1e-9 if s.numel() else 1.0
    if k >= s.numel():
        return float(s[-1])
    return (float(s[k - 1]) + float(s[k])) / 2
