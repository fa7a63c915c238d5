"""Measurements on one trained model for bench/science.py: p_t, the bound's gap, CrackForest maps.

Each function takes a trained checkpoint and tensors, and returns plain JSON-able dicts.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from models.checkpoint import Checkpoint
from models.data import IMAGENET_MEAN, IMAGENET_STD, normalise
from models.inference import InferenceConfig, Predictor
from models.losses import gm_loss, gm_sampled_loss, igmsda_loss
from models.training import predict_logits

PT_BINS = 20


def true_class_probs(
    checkpoint: Checkpoint, images: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    """(N,) uncalibrated softmax probability of the true class (T = 1), float64."""
    model = checkpoint.build_model("cpu").to(memory_format=torch.channels_last)
    logits = predict_logits(model, images, torch.device("cpu")).double()
    return F.softmax(logits, 1).gather(1, labels.view(-1, 1)).squeeze(1)


def pt_summary(pt: torch.Tensor) -> dict[str, Any]:
    """Mean, quantiles, the share above 0.99 and a 20-bin histogram on [0, 1] of p_t."""
    values = pt.double()
    quantiles = torch.quantile(
        values, torch.tensor([0.05, 0.25, 0.5, 0.75, 0.95], dtype=torch.float64)
    )
    hist = torch.histc(values, bins=PT_BINS, min=0.0, max=1.0)
    return {
        "n": int(values.numel()),
        "mean": float(values.mean()),
        "q05": float(quantiles[0]),
        "q25": float(quantiles[1]),
        "median": float(quantiles[2]),
        "q75": float(quantiles[3]),
        "q95": float(quantiles[4]),
        "share_above_0_99": float((values > 0.99).double().mean()),
        "histogram": (hist / max(1, values.numel())).tolist(),
    }


@torch.inference_mode()
def features_of(checkpoint: Checkpoint, images: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """(N, 3, S, S) uint8 tiles -> (N, F) float64 pooled features a = M_e(x), eval mode."""
    model = checkpoint.build_model("cpu")
    out = []
    for start in range(0, images.shape[0], batch):
        x = normalise(images[start : start + batch], IMAGENET_MEAN, IMAGENET_STD)
        out.append(model.forward_features(x).double())
    return torch.cat(out)


def bound_gap(
    checkpoint: Checkpoint,
    images: torch.Tensor,
    labels: torch.Tensor,
    samples: int = 2048,
    seed: int = 0,
) -> dict[str, Any]:
    """The closed form against the Monte Carlo GM loss it bounds, at the end-of-training λ and α.

    With λ = λ0 and α = 1 + α0 (the schedules at t = T) and the run's final class
    covariances Σ_y, for every tile: bound = igmsda_loss, mc = mean of L_g over
    `samples` draws ã ~ N(a, λ Σ_y) (gm_sampled_loss), both in float64. Also the
    same comparison at λ = 0, where mc is the exact gm_loss and the whole gap comes
    from Jensen and Cauchy–Schwarz. The gap is reported against the tile's p_t.
    """
    if checkpoint.estimator_state is None:
        raise ValueError("the checkpoint has no covariance estimate (not an ISDA-family run)")
    hp = checkpoint.config
    lam, alpha = float(hp["lam0"]), 1.0 + float(hp["alpha0"])
    feats = features_of(checkpoint, images)
    weight = checkpoint.model_state["head.weight"].double()
    bias = checkpoint.model_state["head.bias"].double()
    cov = checkpoint.estimator_state["cov"].double()
    generator = torch.Generator().manual_seed(seed)
    bound = igmsda_loss(feats, labels, weight, bias, cov, lam, alpha, reduction="none")
    mc = gm_sampled_loss(
        feats, labels, weight, bias, cov, lam, alpha, samples, generator, reduction="none"
    )
    logits = F.linear(feats, weight, bias)
    bound0 = igmsda_loss(feats, labels, weight, bias, cov, 0.0, alpha, reduction="none")
    exact0 = gm_loss(logits, labels, alpha, reduction="none")
    pt = F.softmax(logits, 1).gather(1, labels.view(-1, 1)).squeeze(1)
    gap = bound - mc
    by_pt = []
    for low, high in ((0.0, 0.5), (0.5, 0.9), (0.9, 0.99), (0.99, 1.0 + 1e-12)):
        mask = (pt >= low) & (pt < high)
        if int(mask.sum()) == 0:
            continue
        by_pt.append(
            {
                "p_t": f"[{low:g}, {min(high, 1.0):g}{')' if high < 1 else ']'}",
                "n": int(mask.sum()),
                "bound": float(bound[mask].mean()),
                "mc": float(mc[mask].mean()),
                "gap": float(gap[mask].mean()),
                "gap_lambda0": float((bound0 - exact0)[mask].mean()),
            }
        )
    return {
        "lam": lam,
        "alpha": alpha,
        "samples": samples,
        "n": int(labels.numel()),
        "bound_mean": float(bound.mean()),
        "mc_mean": float(mc.mean()),
        "gap_mean": float(gap.mean()),
        "gap_min": float(gap.min()),
        "relative_gap": float(gap.mean() / mc.mean()),
        "share_bound_below_mc": float((gap < 0).double().mean()),
        "gap_lambda0_mean": float((bound0 - exact0).mean()),
        "by_p_t": by_pt,
    }


def cfd_tile_labels(
    mask: np.ndarray, tiles: list[tuple[int, int, int, int]], min_pixels: int
) -> list[int]:
    """1 (crack) when a tile holds >= min_pixels mask pixels, 0 when it holds none, −1 between."""
    out = []
    for x, y, w, h in tiles:
        count = int((mask[y : y + h, x : x + w] > 127).sum())
        out.append(1 if count >= min_pixels else 0 if count == 0 else -1)
    return out


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the precision–recall curve (step-wise, as scikit-learn's average_precision)."""
    positives = int(labels.sum())
    if positives == 0:
        return math.nan
    order = np.argsort(-scores, kind="stable")
    hits = labels[order]
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float((precision * hits).sum() / positives)


def score_cfd(checkpoint: Checkpoint, cfd: Path, tile: int) -> dict[str, Any]:
    """Map every CrackForest photo with non-overlapping `tile`-px tiles and score them.

    Tile labels come from the masks: crack when the tile holds >= `tile` crack pixels
    (a 1-px crack across the whole tile), no crack when it holds none, and left out
    (ambiguous) in between. A tile is predicted crack when its calibrated crack
    probability is >= 0.5. Returns crack-class P, R, F, average precision and counts.
    """
    predictor = Predictor(checkpoint, InferenceConfig(device="cpu", batch_size=256))
    scores, labels = [], []
    excluded = 0
    images = sorted((cfd / "image").glob("*.jpg"))
    if not images:
        raise FileNotFoundError(f"no CrackForest images under {cfd / 'image'}")
    for path in images:
        mask = np.asarray(Image.open(cfd / "mask" / f"{path.stem}.png").convert("L"))
        with Image.open(path) as img:
            array = np.asarray(img.convert("RGB"))
        crack_map = predictor.inspect_array(array, tile=tile, stride=tile)
        boxes = [(t.x, t.y, t.w, t.h) for t in crack_map.tiles()]
        for t, label in zip(crack_map.tiles(), cfd_tile_labels(mask, boxes, tile), strict=True):
            if label < 0:
                excluded += 1
                continue
            scores.append(t.defect_prob)
            labels.append(label)
    s, y = np.asarray(scores), np.asarray(labels)
    predicted = s >= 0.5
    tp = int((predicted & (y == 1)).sum())
    fp = int((predicted & (y == 0)).sum())
    fn = int((~predicted & (y == 1)).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "tile": tile,
        "min_crack_pixels": tile,
        "images": len(images),
        "tiles_scored": int(len(y)),
        "crack_tiles": int(y.sum()),
        "excluded_ambiguous": excluded,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "average_precision": average_precision(s, y),
    }
