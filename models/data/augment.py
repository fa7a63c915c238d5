"""Augmentations for survey photos, drawn from one generator so a resumed epoch is identical.

Modes:
  none    the tiles as they are;
  flip    random horizontal flips (the IGMSDA paper's recipe);
  survey  what changes between surveys: 90° rotations, horizontal and vertical flips,
          rescaling by 0.7–1.4 (zoom in: a random crop resized up; zoom out: the tile
          shrunk and mirror-padded), brightness and contrast 0.75–1.25, per-channel
          colour gain 0.9–1.1, Gaussian blur (σ 0.5–1.2) on 20% of tiles and JPEG
          re-encoding (quality 30–90) on 30%.
"""

from __future__ import annotations

import io
import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

AUGMENTS = ("none", "flip", "survey")
SCALE_RANGE = (0.7, 1.4)
BRIGHTNESS_RANGE = (0.75, 1.25)
CONTRAST_RANGE = (0.75, 1.25)
COLOUR_RANGE = (0.9, 1.1)
BLUR_SHARE, BLUR_SIGMA = 0.2, (0.5, 1.2)
JPEG_SHARE, JPEG_QUALITY = 0.3, (30, 90)


def check_augment(mode: str) -> str:
    if mode not in AUGMENTS:
        raise ValueError(f"augment must be one of {AUGMENTS}, got {mode!r}")
    return mode


def _uniform(n: int, bounds: tuple[float, float], g: torch.Generator) -> torch.Tensor:
    lo, hi = bounds
    return lo + (hi - lo) * torch.rand(n, generator=g, dtype=torch.float64)


def _rescale(tile: torch.Tensor, scale: float, g: torch.Generator) -> torch.Tensor:
    """(3, S, S) float: zoom in by a random crop resized up, or out by shrinking and mirroring."""
    size = tile.shape[-1]
    if scale >= 1.0:
        crop = max(2, round(size / scale))
        top, left = (torch.randint(0, size - crop + 1, (2,), generator=g)).tolist()
        part = tile[:, top : top + crop, left : left + crop].unsqueeze(0)
        return F.interpolate(part, size=(size, size), mode="bilinear", align_corners=False)[0]
    small = max(2, round(size * scale))
    shrunk = F.interpolate(tile.unsqueeze(0), size=(small, small), mode="area")
    pad = size - small
    before = pad // 2
    padded = F.pad(shrunk, (before, pad - before, before, pad - before), mode="reflect")
    return padded[0]


def _blur(tile: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, math.ceil(2 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=tile.dtype)
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    img = F.pad(tile.unsqueeze(0), (radius, radius, radius, radius), mode="reflect")
    img = F.conv2d(img, kernel.view(1, 1, 1, -1).expand(3, 1, 1, -1), groups=3)
    img = F.conv2d(img, kernel.view(1, 1, -1, 1).expand(3, 1, -1, 1), groups=3)
    return img[0]


def _jpeg(tile: torch.Tensor, quality: int) -> torch.Tensor:
    array = tile.round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "JPEG", quality=int(quality))
    decoded = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
    return torch.from_numpy(decoded.copy()).permute(2, 0, 1).to(tile.dtype)


def survey_augment(batch: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """(N, 3, S, S) uint8 -> (N, 3, S, S) uint8, every random choice drawn from g."""
    n = batch.shape[0]
    rotations = torch.randint(0, 4, (n,), generator=g)
    hflip = torch.rand(n, generator=g) < 0.5
    vflip = torch.rand(n, generator=g) < 0.5
    scale = torch.exp(_uniform(n, (math.log(SCALE_RANGE[0]), math.log(SCALE_RANGE[1])), g))
    brightness = _uniform(n, BRIGHTNESS_RANGE, g)
    contrast = _uniform(n, CONTRAST_RANGE, g)
    colour = COLOUR_RANGE[0] + (COLOUR_RANGE[1] - COLOUR_RANGE[0]) * torch.rand(
        n, 3, generator=g, dtype=torch.float64
    )
    blur = torch.rand(n, generator=g) < BLUR_SHARE
    sigma = _uniform(n, BLUR_SIGMA, g)
    jpeg = torch.rand(n, generator=g) < JPEG_SHARE
    quality = torch.randint(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1, (n,), generator=g)
    out = torch.empty_like(batch)
    for i in range(n):
        tile = batch[i].to(torch.float32)
        tile = torch.rot90(tile, int(rotations[i]), dims=(1, 2))
        if hflip[i]:
            tile = tile.flip(-1)
        if vflip[i]:
            tile = tile.flip(-2)
        if abs(float(scale[i]) - 1.0) > 1e-3:
            tile = _rescale(tile, float(scale[i]), g)
        mean = tile.mean()
        tile = (tile - mean) * float(contrast[i]) + mean
        tile = tile * float(brightness[i]) * colour[i].to(tile.dtype).view(3, 1, 1)
        if blur[i]:
            tile = _blur(tile, float(sigma[i]))
        tile = tile.clamp(0, 255)
        if jpeg[i]:
            tile = _jpeg(tile, int(quality[i]))
        out[i] = tile.round().clamp(0, 255).to(torch.uint8)
    return out
