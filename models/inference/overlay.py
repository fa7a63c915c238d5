"""The overlay picture: the downscaled photo under a colour heatmap, defect tiles outlined, a legend."""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from models.inference.crackmap import CrackMap

# Colour stops of the heatmap, from no defect (transparent blue) to certain (red).
_STOPS = np.array([[0.0, 40, 90, 255], [0.5, 255, 220, 0], [1.0, 230, 20, 20]], dtype=np.float32)
LEGEND_HEIGHT = 46
LEGEND_MIN_WIDTH = 640  # room for the legend's text under small photos


def colourise(values: np.ndarray) -> np.ndarray:
    """(H, W) probabilities in [0, 1] -> (H, W, 3) uint8 colours along _STOPS."""
    v = np.clip(values, 0, 1)
    out = np.empty((*v.shape, 3), dtype=np.float32)
    for channel in range(3):
        out[..., channel] = np.interp(v, _STOPS[:, 0], _STOPS[:, channel + 1])
    return out.astype(np.uint8)


def preview_box(x: int, y: int, w: int, h: int, scale: float) -> tuple[int, int, int, int]:
    """A tile's box (x0, y0, x1, y1), inclusive, in the pixels of a preview scaled by `scale`:
    at least one pixel each way, however small the tile comes out (a long panorama shrinks
    its tiles under a pixel)."""
    x0, y0 = math.floor(x * scale), math.floor(y * scale)
    x1 = max(x0, math.ceil((x + w) * scale) - 1)
    y1 = max(y0, math.ceil((y + h) * scale) - 1)
    return x0, y0, x1, y1


def render_overlay(
    image: np.ndarray | Image.Image, crack_map: CrackMap, max_side: int = 1600
) -> bytes:
    """PNG bytes of the overlay for the photo the map was made from ((H, W, 3) uint8 or RGB PIL)."""
    picture = image if isinstance(image, Image.Image) else Image.fromarray(image)
    width, height = picture.size
    scale = min(1.0, max_side / max(width, height))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    photo = (
        picture.resize(size, Image.Resampling.BILINEAR, reducing_gap=3.0) if scale < 1 else picture
    )
    cells = crack_map.heatmap
    heat = np.asarray(Image.fromarray(cells, mode="F").resize(size, Image.Resampling.NEAREST))
    colours = colourise(heat).astype(np.float32)
    alpha = (0.15 + 0.5 * np.clip(heat, 0, 1))[..., None]
    blended = (np.asarray(photo, dtype=np.float32) * (1 - alpha) + colours * alpha).astype(np.uint8)
    canvas = Image.new(
        "RGB", (max(size[0], LEGEND_MIN_WIDTH), size[1] + LEGEND_HEIGHT), (255, 255, 255)
    )
    canvas.paste(Image.fromarray(blended), (0, 0))
    draw = ImageDraw.Draw(canvas)
    table = crack_map.table
    w, h = table.grid.tile_w, table.grid.tile_h
    for index in table.select(defect=True):
        _, _, y, x = table.grid.position(int(index))
        box = preview_box(x, y, w, h, scale)
        thin = min(box[2] - box[0], box[3] - box[1]) < 4  # no room inside for a 2-px outline
        draw.rectangle(box, outline=(255, 0, 0), width=1 if thin else 2)
    _legend(draw, canvas.width, size[1], crack_map)
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def _legend(draw: ImageDraw.ImageDraw, width: int, top: int, crack_map: CrackMap) -> None:
    font = ImageFont.load_default()
    bar_w = min(300, max(60, width // 3))
    ramp = colourise(np.linspace(0, 1, bar_w, dtype=np.float32)[None, :])[0]
    for i, colour in enumerate(ramp):
        draw.line([(10 + i, top + 8), (10 + i, top + 22)], fill=tuple(int(c) for c in colour))
    draw.text((10, top + 26), "0", fill=(0, 0, 0), font=font)
    draw.text((10 + bar_w - 6, top + 26), "1", fill=(0, 0, 0), font=font)
    summary = crack_map.summary()
    text = (
        f"P(defect)  |  red boxes: defect tiles (p >= {crack_map.threshold:.2f}): "
        f"{summary['defect_tiles']}/{summary['tiles']}"
    )
    draw.text((20 + bar_w, top + 12), text, fill=(0, 0, 0), font=font)
