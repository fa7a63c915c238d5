"""Schedules of the augmentation strength λ and the modulation α (IGMSDA.md, "Schedules")."""

from __future__ import annotations

import math


def check_progress(progress: float) -> float:
    """Return progress t/T as a float, checking it lies in [0, 1]."""
    value = float(progress)
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"progress t/T must lie in [0, 1], got {progress!r}")
    return value


def lam_schedule(progress: float, lam0: float) -> float:
    """λ = (t/T) · λ0."""
    return check_progress(progress) * lam0


def alpha_schedule(progress: float, alpha0: float) -> float:
    """α = (t/T) · α0 + 1."""
    return check_progress(progress) * alpha0 + 1.0
