"""Synthetic concrete and asphalt with procedurally drawn cracks, for tests, the demo and benchmarks.

Everything is seeded: the same seed gives the same pixels.
  make_tile        one tile of class crack / no_crack / scratch
  write_tile_set   a labelled set on disk (one folder per class)
  make_survey      a large survey photo with its pixel crack mask
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SURFACES = ("concrete", "asphalt")
TILE_CLASSES = ("crack", "no_crack", "scratch")


def texture(rng: np.random.Generator, width: int, height: int, surface: str) -> np.ndarray:
    """(H, W) float32 grey texture in [0, 255]: smooth blotches plus grain."""
    if surface not in SURFACES:
        raise ValueError(f"surface must be one of {SURFACES}, got {surface!r}")
    base, grain, blotch = (165.0, 9.0, 14.0) if surface == "concrete" else (95.0, 16.0, 8.0)
    base += rng.uniform(-20, 20)
    out = np.full((height, width), base, dtype=np.float32)
    for cell in (max(width, height) // 4, 24, 6):
        gw, gh = max(2, width // max(cell, 1) + 2), max(2, height // max(cell, 1) + 2)
        noise = rng.normal(0, 1, (gh, gw)).astype(np.float32)
        img = Image.fromarray(noise, mode="F").resize((width, height), Image.Resampling.BILINEAR)
        out += blotch * np.asarray(img, dtype=np.float32) * (0.6 if cell == 6 else 1.0)
    out += rng.normal(0, grain, (height, width)).astype(np.float32)
    if surface == "asphalt":  # light aggregate stones
        count = int(width * height / 400)
        ys, xs = rng.integers(0, height, count), rng.integers(0, width, count)
        out[ys, xs] += rng.uniform(30, 80, count).astype(np.float32)
    return out


def crack_path(
    rng: np.random.Generator, start: tuple[float, float], length: float, step: float
) -> list[tuple[float, float]]:
    """A jagged random-walk polyline: a drifting heading with sharp small turns."""
    x, y = start
    heading = rng.uniform(0, 2 * math.pi)
    points = [(x, y)]
    for _ in range(max(2, int(length / step))):
        heading += rng.normal(0, 0.45)
        x += step * math.cos(heading)
        y += step * math.sin(heading)
        points.append((x, y))
    return points


def draw_crack(
    draw: ImageDraw.ImageDraw,
    rng: np.random.Generator,
    start: tuple[float, float],
    length: float,
    width: float,
    depth: int = 0,
) -> None:
    """Draw a branching crack of tapering width onto an 'L' mask (255 = crack)."""
    step = max(2.0, length / 30)
    points = crack_path(rng, start, length, step)
    for i in range(len(points) - 1):
        w = max(1, round(width * (1 - 0.6 * i / len(points)) + rng.normal(0, 0.4)))
        draw.line([points[i], points[i + 1]], fill=255, width=w)
    if depth < 2:
        for _ in range(rng.integers(0, 3)):
            k = int(rng.integers(1, len(points)))
            draw_crack(
                draw, rng, points[k], length * rng.uniform(0.25, 0.5), width * 0.6, depth + 1
            )


def _apply_mask(surface: np.ndarray, mask: Image.Image, contrast: float, blur: float) -> np.ndarray:
    soft = np.asarray(mask.filter(ImageFilter.GaussianBlur(blur)), dtype=np.float32) / 255.0
    return surface - contrast * soft


def _distractors(
    rng: np.random.Generator, surface: np.ndarray, size: tuple[int, int]
) -> np.ndarray:
    """Stains and straight joints: things that are not cracks."""
    w, h = size
    layer = Image.new("L", size, 0)
    draw = ImageDraw.Draw(layer)
    for _ in range(rng.integers(0, 3)):  # stains
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        rx, ry = rng.uniform(0.05, 0.25) * w, rng.uniform(0.05, 0.25) * h
        draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=int(rng.integers(60, 140)))
    out = _apply_mask(
        surface, layer, rng.choice([-1.0, 1.0]) * rng.uniform(15, 35), min(12.0, 4 + w / 20)
    )
    if rng.random() < 0.4:  # a straight saw-cut joint across the whole tile
        joint = Image.new("L", size, 0)
        jd = ImageDraw.Draw(joint)
        if rng.random() < 0.5:
            x = rng.uniform(0.2, 0.8) * w
            jd.line([(x, 0), (x, h)], fill=255, width=min(24, max(2, w // 20)))
        else:
            y = rng.uniform(0.2, 0.8) * h
            jd.line([(0, y), (w, y)], fill=255, width=min(24, max(2, h // 20)))
        out = _apply_mask(out, joint, rng.uniform(25, 50), 1.5)
    return out


def _scratch(rng: np.random.Generator, surface: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Thin, light, straight scratches: the third class of the NPP2021 setting."""
    w, h = size
    layer = Image.new("L", size, 0)
    draw = ImageDraw.Draw(layer)
    for _ in range(rng.integers(1, 4)):
        x0, y0 = rng.uniform(0, w), rng.uniform(0, h)
        angle, length = rng.uniform(0, math.pi), rng.uniform(0.4, 0.9) * max(w, h)
        x1, y1 = x0 + length * math.cos(angle), y0 + length * math.sin(angle)
        draw.line([(x0, y0), (x1, y1)], fill=255, width=1)
    return _apply_mask(surface, layer, -rng.uniform(40, 70), 0.5)


def make_tile(
    rng: np.random.Generator, size: int, kind: str, surface: str | None = None
) -> Image.Image:
    """One RGB tile of the given class ("crack", "no_crack" or "scratch")."""
    if kind not in TILE_CLASSES:
        raise ValueError(f"kind must be one of {TILE_CLASSES}, got {kind!r}")
    surface = surface or str(rng.choice(SURFACES))
    grey = _distractors(rng, texture(rng, size, size, surface), (size, size))
    if kind == "crack":
        mask = Image.new("L", (size, size), 0)
        start = (rng.uniform(0.2, 0.8) * size, rng.uniform(0.2, 0.8) * size)
        draw_crack(
            ImageDraw.Draw(mask), rng, start, rng.uniform(0.6, 1.2) * size, rng.uniform(1.5, 4)
        )
        grey = _apply_mask(grey, mask, rng.uniform(50, 100), 0.7)
    elif kind == "scratch":
        grey = _scratch(rng, grey, (size, size))
    return _tint(rng, grey)


def _tint(rng: np.random.Generator, grey: np.ndarray) -> Image.Image:
    tint = np.array([1.0, 1.0, 1.0]) + rng.normal(0, 0.03, 3)
    rgb = np.clip(grey[..., None] * tint[None, None, :], 0, 255).astype(np.uint8)
    return Image.fromarray(rgb, "RGB")


def write_tile_set(
    out_dir: str | Path,
    per_class: int,
    size: int = 64,
    classes: tuple[str, ...] = ("crack", "no_crack"),
    seed: int = 0,
) -> Path:
    """Write `per_class` PNG tiles per class into out_dir/<class>/NNNNN.png; return out_dir."""
    out = Path(out_dir)
    rng = np.random.default_rng(seed)
    for kind in classes:
        folder = out / kind
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            make_tile(rng, size, kind).save(folder / f"{i:05d}.png")
    return out


def make_survey(
    width: int = 6000,
    height: int = 4000,
    seed: int = 0,
    cracks: int = 6,
    surface: str = "concrete",
    crack_width: tuple[float, float] = (3.0, 7.0),
    crack_length: tuple[float, float] = (0.3, 0.7),
) -> tuple[Image.Image, np.ndarray]:
    """A large survey photo and its (H, W) uint8 mask (255 where a pixel is crack).

    Crack widths are drawn from `crack_width` (pixels), lengths from `crack_length`
    (fractions of the shorter side).
    """
    rng = np.random.default_rng(seed)
    grey = _distractors(rng, texture(rng, width, height, surface), (width, height))
    mask = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(mask)
    scale = min(width, height)
    for _ in range(cracks):
        start = (rng.uniform(0.1, 0.9) * width, rng.uniform(0.1, 0.9) * height)
        draw_crack(draw, rng, start, rng.uniform(*crack_length) * scale, rng.uniform(*crack_width))
    grey = _apply_mask(grey, mask, rng.uniform(60, 100), 1.0)
    return _tint(rng, grey), np.asarray(mask, dtype=np.uint8)
