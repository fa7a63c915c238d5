"""Augmentations for survey photos, drawn from one generator so a resumed epoch is identical.

Modes:
  none    the tiles as they are;
  flip    random horizontal flips (the IGMSDA paper's recipe);
  survey  what changes between surveys: 90° rotations, horizontal and vertical flips,
          rescaling by 0.7–1.4 (zoom in: a random window enlarged; zoom out: the tile
          shrunk, its border filled by mirroring), brightness and contrast 0.75–1.25, per-channel
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


def _rotate_and_flip(
    x: torch.Tensor, k: torch.Tensor, hflip: torch.Tensor, vflip: torch.Tensor
) -> torch.Tensor:
    """(N, 3, S, S): rotate each tile by k·90° and flip it as drawn."""
    out = x.clone()
    for turns in range(1, 4):
        chosen = k == turns
        if bool(chosen.any()):
            out[chosen] = torch.rot90(x[chosen], turns, dims=(2, 3))
    out = torch.where(hflip.view(-1, 1, 1, 1), out.flip(-1), out)
    return torch.where(vflip.view(-1, 1, 1, 1), out.flip(-2), out)


def _rescale(x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """(N, 3, S, S) float: zoom each tile by its scale about a shifted centre.

    A scale above 1 samples a random window of side S/scale (inside the tile) and
    enlarges it; below 1 shrinks the tile, filling the border by mirroring it.
    """
    n = x.shape[0]
    inv = (1.0 / scale).to(x.dtype)
    room = (1.0 - inv).clamp(min=0)  # how far a zoomed-in window may move, in [-1, 1] units
    theta = torch.zeros(n, 2, 3, dtype=x.dtype)
    theta[:, 0, 0] = inv
    theta[:, 1, 1] = inv
    theta[:, :, 2] = shift.to(x.dtype) * room.unsqueeze(1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def _blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """(M, 3, S, S) float, each tile blurred with its own Gaussian σ (separable, mirrored)."""
    radius = max(1, math.ceil(2 * float(sigma.max())))
    offsets = torch.arange(-radius, radius + 1, dtype=x.dtype)
    kernel = torch.exp(-(offsets**2) / (2 * sigma.to(x.dtype).view(-1, 1) ** 2))
    kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(3, 0)  # (M·3, K)
    m, c, h, w = x.shape
    flat = F.pad(x.reshape(1, m * c, h, w), (radius, radius, radius, radius), mode="reflect")
    flat = F.conv2d(flat, kernel.view(m * c, 1, 1, -1), groups=m * c)
    flat = F.conv2d(flat, kernel.view(m * c, 1, -1, 1), groups=m * c)
    return flat.view(m, c, h, w)


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
    shift = 2 * torch.rand(n, 2, generator=g, dtype=torch.float64) - 1
    brightness = _uniform(n, BRIGHTNESS_RANGE, g)
    contrast = _uniform(n, CONTRAST_RANGE, g)
    colour = COLOUR_RANGE[0] + (COLOUR_RANGE[1] - COLOUR_RANGE[0]) * torch.rand(
        n, 3, generator=g, dtype=torch.float64
    )
    blur = torch.rand(n, generator=g) < BLUR_SHARE
    sigma = _uniform(n, BLUR_SIGMA, g)
    jpeg = torch.rand(n, generator=g) < JPEG_SHARE
    quality = torch.randint(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1, (n,), generator=g)

    x = _rotate_and_flip(batch.to(torch.float32), rotations, hflip, vflip)
    x = _rescale(x, scale, shift)
    mean = x.mean((1, 2, 3), keepdim=True)
    x = (x - mean) * contrast.to(x.dtype).view(-1, 1, 1, 1) + mean
    x = x * (brightness.view(-1, 1) * colour).to(x.dtype).view(n, 3, 1, 1)
    if bool(blur.any()):
        x[blur] = _blur(x[blur], sigma[blur])
    x = x.clamp(0, 255)
    for i in torch.nonzero(jpeg).flatten().tolist():
        x[i] = _jpeg(x[i], int(quality[i]))
    return x.round().clamp(0, 255).to(torch.uint8)
