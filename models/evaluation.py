"""Tile detection scored per photo: what an inspector sees on each map of a masks set."""

from __future__ import annotations

from typing import Any

import torch

from models.checkpoint import Checkpoint
from models.data import LabelledSet, Sample, load_tiles
from models.threshold import defect_scores, detection_metrics
from models.training.steps import predict_logits


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


def detection_on(
    ckpt: Checkpoint,
    data: LabelledSet,
    samples: list[Sample],
    device: torch.device | None = None,
    batch_size: int = 256,
) -> dict[str, float]:
    """Tile detection metrics of a checkpoint over some samples, at its operating threshold.

    p_defect = sum over defect classes of softmax(logits / T). `data` must be in the
    checkpoint's class order (LabelledSet.in_class_order).
    """
    if data.classes != ckpt.classes:
        raise ValueError(f"the set's classes {data.classes} are not the model's {ckpt.classes}")
    device = device or torch.device("cpu")
    images, labels = load_tiles(data.source, samples, ckpt.input_size)
    logits = predict_logits(
        ckpt.build_model(device),
        images,
        device,
        batch_size,
        False,
        tuple(ckpt.mean),
        tuple(ckpt.std),
    )
    probs = torch.softmax(logits.double() / ckpt.temperature, 1)
    defect_index = [ckpt.classes.index(c) for c in ckpt.defect_classes]
    score, truth = defect_scores(probs, labels, defect_index)
    return detection_metrics(score, truth, ckpt.operating_threshold)
