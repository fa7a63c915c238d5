"""Argument checks shared by the functional losses (they raise ValueError)."""

from __future__ import annotations

import math

import torch

REDUCTIONS = ("mean", "sum", "none")


def check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


def check_lam(lam: float) -> None:
    if not math.isfinite(float(lam)) or lam < 0:
        raise ValueError(f"lam must be a finite number >= 0, got {lam!r}")


def check_alpha(alpha: float) -> None:
    if not math.isfinite(float(alpha)) or alpha <= 0:
        raise ValueError(f"alpha must be a finite number > 0, got {alpha!r}")


def check_logits(logits: torch.Tensor, labels: torch.Tensor) -> int:
    """Check (N, C) logits against (N,) int64 labels; return C."""
    if logits.dim() != 2:
        raise ValueError(f"logits must have shape (N, C), got {tuple(logits.shape)}")
    num_classes = logits.shape[1]
    if num_classes < 2:
        raise ValueError(f"need at least 2 classes, got C={num_classes}")
    check_labels(labels, logits.shape[0], num_classes)
    return num_classes


def check_labels(labels: torch.Tensor, n: int, num_classes: int) -> None:
    if labels.dim() != 1 or labels.shape[0] != n:
        raise ValueError(f"labels must have shape ({n},), got {tuple(labels.shape)}")
    if labels.dtype != torch.int64:
        raise ValueError(f"labels must be int64, got {labels.dtype}")
    # Range check only where it costs no device synchronisation.
    if labels.device.type == "cpu" and n > 0:
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi >= num_classes:
            raise ValueError(f"labels must lie in [0, {num_classes - 1}], got [{lo}, {hi}]")


def check_linear(
    features: torch.Tensor,
    labels: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    class_cov: torch.Tensor,
) -> tuple[int, int]:
    """Check the shapes of a feature-space loss call; return (C, F)."""
    if features.dim() != 2:
        raise ValueError(f"features must have shape (N, F), got {tuple(features.shape)}")
    if weight.dim() != 2:
        raise ValueError(f"weight must have shape (C, F), got {tuple(weight.shape)}")
    num_classes, feature_dim = weight.shape
    if num_classes < 2:
        raise ValueError(f"need at least 2 classes, got C={num_classes}")
    if features.shape[1] != feature_dim:
        raise ValueError(f"features have F={features.shape[1]} but weight expects F={feature_dim}")
    if bias is not None and tuple(bias.shape) != (num_classes,):
        raise ValueError(
            f"bias must have shape ({num_classes},) or be None, got {tuple(bias.shape)}"
        )
    full = (num_classes, feature_dim, feature_dim)
    diag = (num_classes, feature_dim)
    if tuple(class_cov.shape) not in (full, diag):
        raise ValueError(
            f"class_cov must have shape {full} (full) or {diag} (diagonal), "
            f"got {tuple(class_cov.shape)}"
        )
    check_labels(labels, features.shape[0], num_classes)
    return num_classes, feature_dim


def check_augmented(
    features: torch.Tensor,
    labels: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    class_cov: torch.Tensor,
    lam: float,
    alpha: float,
    reduction: str,
) -> int:
    """Check a modulated feature-augmentation call (IGMSDA, its exact form, GM); return C."""
    num_classes, _ = check_linear(features, labels, weight, bias, class_cov)
    check_lam(lam)
    check_alpha(alpha)
    check_reduction(reduction)
    return num_classes


def loss_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """float32 for half-precision inputs (the loss never runs in fp16/bf16), else promoted."""
    dtype = tensors[0].dtype
    for t in tensors[1:]:
        dtype = torch.promote_types(dtype, t.dtype)
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    """Apply a reduction to a per-sample (N,) loss."""
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss
