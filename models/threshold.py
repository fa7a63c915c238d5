"""The operating threshold: the defect-probability cut a model's maps use, chosen on validation.

A tile is a defect when p_defect = Σ_{c ∈ defects} softmax(z / T)_c >= t. The threshold
t is chosen on the validation split by one of two rules:

- ``max_f1``: the t that maximises the defect class's F1 (the midpoint between the
  two neighbouring scores, so a tile at the optimum's edge is not a coin flip);
- ``target_precision``: the lowest t whose precision reaches the target, which keeps
  recall as high as the target allows; when no t reaches it, ``max_f1`` is used and
  the report says so.
"""

from __future__ import annotations

from typing import Any

import torch

DEFAULT_THRESHOLD = 0.5  # for checkpoints that predate operating thresholds


def defect_scores(
    probs: torch.Tensor, labels: torch.Tensor, defect_index: list[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, C) probabilities and (N,) labels -> (N,) p_defect and (N,) bool is-defect."""
    index = torch.tensor(defect_index, dtype=torch.int64)
    score = probs.to(torch.float64)[:, index].sum(1)
    return score, torch.isin(labels.to(torch.int64), index)


def detection_metrics(
    score: torch.Tensor, truth: torch.Tensor, threshold: float
) -> dict[str, float]:
    """Precision, recall and F1 of "defect" at a threshold, and the false-alarm rate:
    the share of defect-free tiles flagged."""
    flagged = score >= threshold
    tp = int((flagged & truth).sum())
    fp = int((flagged & ~truth).sum())
    fn = int((~flagged & truth).sum())
    negatives = int((~truth).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "threshold": float(threshold),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "false_alarm_rate": fp / negatives if negatives else 0.0,
        "tiles": int(score.numel()),
        "defect_tiles": int(truth.sum()),
    }


def choose_threshold(
    score: torch.Tensor, truth: torch.Tensor, target_precision: float | None = None
) -> dict[str, Any]:
    """Pick the operating threshold on validation scores (see the module docstring).

    Args:
        score: (N,) p_defect.  truth: (N,) bool, True for defect tiles.
        target_precision: in (0, 1], or None for the F1 rule.

    Returns:
        {"threshold", "rule", "target_precision", "reached", "val": detection_metrics}.
    """
    if target_precision is not None and not 0.0 < target_precision <= 1.0:
        raise ValueError(f"target_precision must lie in (0, 1], got {target_precision}")
    if score.numel() == 0 or not bool(truth.any()) or bool(truth.all()):
        chosen, rule, reached = DEFAULT_THRESHOLD, "default (validation lacks a class)", False
    else:
        order = torch.argsort(score, descending=True)
        s, t = score[order], truth[order].to(torch.float64)
        tp = torch.cumsum(t, 0)
        flagged = torch.arange(1, len(s) + 1, dtype=torch.float64)
        # Only cut between distinct scores: the last index of each run of equal scores.
        last = torch.ones_like(s, dtype=torch.bool)
        last[:-1] = s[1:] != s[:-1]
        precision = tp / flagged
        recall = tp / t.sum()
        f1 = 2 * precision * recall / (precision + recall).clamp(min=1e-12)
        below = torch.cat([s[1:], s.new_zeros(1)])  # the next lower score
        cut = ((s + below) / 2).clamp(max=1.0)  # between this score and the next

        rule, reached = "max_f1", False
        pick = int(torch.where(last, f1, torch.full_like(f1, -1.0)).argmax())
        if target_precision is not None:
            ok = last & (precision >= target_precision - 1e-12)
            if bool(ok.any()):
                pick = int(torch.nonzero(ok).flatten()[-1])  # the most tiles flagged: lowest t
                rule, reached = "target_precision", True
            else:
                rule = "max_f1 (target precision not reached)"
        chosen = float(cut[pick]) if pick < len(s) - 1 else float(s[pick]) / 2
    return {
        "threshold": chosen,
        "rule": rule,
        "target_precision": target_precision,
        "reached": reached,
        "val": detection_metrics(score, truth, chosen),
    }
