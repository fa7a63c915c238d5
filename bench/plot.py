"""A small line plot with error bars and a log x axis, drawn with Pillow (no plotting library)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#d62728", "#17becf"]


@dataclass
class Series:
    label: str
    points: list[tuple[float, float, float]]  # (x, y, error half-width)


def _nice_step(span: float) -> float:
    raw = span / 6
    base = 10 ** math.floor(math.log10(raw))
    return next(m * base for m in (1, 2, 2.5, 5, 10) if m * base >= raw)


def line_plot(
    series: list[Series],
    path: Path,
    title: str,
    x_label: str,
    y_label: str,
    size: tuple[int, int] = (1000, 640),
    x_ticks: dict[float, str] | None = None,
) -> None:
    """Draw the series (log x, linear y, ±error bars, legend at the lower right) to a PNG.

    x_ticks relabels some x values (every x of the data gets a tick)."""
    points = [p for s in series for p in s.points]
    if not points:
        raise ValueError("nothing to plot")
    width, height = size
    left, right, top, bottom = 90, 30, 50, 70
    font = ImageFont.load_default(size=15)
    small = ImageFont.load_default(size=13)
    xs = sorted({p[0] for p in points})
    lx0, lx1 = math.log10(xs[0]) - 0.08, math.log10(xs[-1]) + 0.08
    y_lo = min(p[1] - p[2] for p in points)
    y_hi = max(p[1] + p[2] for p in points)
    pad = 0.08 * max(y_hi - y_lo, 0.5)
    y_lo, y_hi = y_lo - pad, min(100.0, y_hi + pad) if y_hi <= 100 else y_hi + pad

    def px(x: float, y: float) -> tuple[float, float]:
        u = (math.log10(x) - lx0) / (lx1 - lx0)
        v = (y - y_lo) / (y_hi - y_lo)
        return left + u * (width - left - right), top + (1 - v) * (height - top - bottom)

    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    draw.text((width / 2, 18), title, fill="black", font=font, anchor="mm")
    x0, y0 = px(10**lx0, y_lo)
    x1, y1 = px(10**lx1, y_hi)
    draw.rectangle((x0, y1, x1, y0), outline="black")
    step = _nice_step(y_hi - y_lo)
    tick = math.ceil(y_lo / step) * step
    while tick <= y_hi:
        _, ty = px(xs[0], tick)
        draw.line((x0, ty, x1, ty), fill="#e6e6e6")
        draw.text((x0 - 8, ty), f"{tick:g}", fill="black", font=small, anchor="rm")
        tick += step
    for x in xs:
        tx, _ = px(x, y_lo)
        draw.line((tx, y0, tx, y0 + 5), fill="black")
        text = (x_ticks or {}).get(x, f"{x:g}")
        draw.text((tx, y0 + 8), text, fill="black", font=small, anchor="mt")
    draw.text(((x0 + x1) / 2, height - 22), x_label, fill="black", font=font, anchor="mm")
    label_img = Image.new("RGB", (height, 24), "white")
    ImageDraw.Draw(label_img).text((height / 2, 12), y_label, fill="black", font=font, anchor="mm")
    image.paste(label_img.rotate(90, expand=True), (8, 0))
    draw = ImageDraw.Draw(image)
    for i, s in enumerate(series):
        colour = COLOURS[i % len(COLOURS)]
        shift = 10 ** ((i - (len(series) - 1) / 2) * 0.008)  # spread the error bars apart
        placed = [
            (px(x * shift, y), px(x * shift, y - e), px(x * shift, y + e)) for x, y, e in s.points
        ]
        for (a, _, _), (b, _, _) in zip(placed, placed[1:], strict=False):
            draw.line((a, b), fill=colour, width=2)
        for (cx, cy), (_, lo), (_, hi) in placed:
            draw.line((cx, lo, cx, hi), fill=colour, width=1)
            draw.line((cx - 4, lo, cx + 4, lo), fill=colour)
            draw.line((cx - 4, hi, cx + 4, hi), fill=colour)
            draw.ellipse((cx - 4, cy - 4, cx + 4, cy + 4), fill=colour)
        ly = y0 - 20 - 20 * (len(series) - 1 - i)
        draw.line((x1 - 170, ly, x1 - 140, ly), fill=colour, width=3)
        draw.text((x1 - 132, ly), s.label, fill="black", font=small, anchor="lm")
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
