"""Tile detection scored per photo: what an inspector sees on each map of a masks set."""

from __future__ import annotations

from typing import Any

import torch

from models.data import Sample
from models.threshold import detection_metrics


def photo_report(
    samples: list[Sample], score: torch.Tensor, truth: torch.Tensor, threshold: float
) -> dict[str, Any]:
    """Detection metrics over all tiles, and per photo (the samples' file), at a threshold.

    Args:
        samples: the N scored tiles; tiles of one photo share its name.
        score: (N,) p_defect.  truth: (N,) bool.  threshold: the defect cut.

    Returns:
        {"tiles": detection_metrics, "photos": [{"photo", ...detection_metrics}],
         "photo_f1_median": median F1 over photos that hold a defect tile,
         "clean_photos_flagged": share of defect-free photos with any tile flagged}.
    """
    groups: dict[str, list[int]] = {}
    for i, sample in enumerate(samples):
        groups.setdefault(sample.name, []).append(i)
    photos: list[dict[str, Any]] = []
    for name, indices in groups.items():
        index = torch.tensor(indices)
        photos.append({"photo": name, **detection_metrics(score[index], truth[index], threshold)})
    with_defects = [p["f1"] for p in photos if p["defect_tiles"] > 0]
    clean = [p for p in photos if p["defect_tiles"] == 0]
    return {
        "tiles": detection_metrics(score, truth, threshold),
        "photos": photos,
        "photo_f1_median": float(torch.tensor(with_defects).median()) if with_defects else None,
        "clean_photos_flagged": (
            sum(1 for p in clean if p["false_alarm_rate"] > 0) / len(clean) if clean else None
        ),
    }
