"""The crack map of one image: per-tile results, a per-cell heatmap and a summary.

Plain dataclasses: app/ turns them into the versioned pydantic schema.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models.inference.tiling import TileGrid


@dataclass
class TileResult:
    row: int
    col: int
    x: int
    y: int
    w: int
    h: int
    probs: dict[str, float]
    defect_prob: float
    defect: bool


@dataclass
class CrackMap:
    width: int
    height: int
    classes: list[str]
    defect_classes: list[str]
    tile: int
    stride: int
    input_size: int
    threshold: float
    rows: int
    cols: int
    tiles: list[TileResult]
    heatmap: np.ndarray  # (cells_y, cells_x) float32 mean defect probability per cell
    cell: int  # heatmap cell size in pixels
    model: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """Tiles, defect tiles, defect area fraction, max probability, per-class counts."""
        defect_area = defect_area_fraction(self)
        counts = {c: 0 for c in self.classes}
        for t in self.tiles:
            counts[max(t.probs, key=lambda c: t.probs[c])] += 1
        return {
            "tiles": len(self.tiles),
            "defect_tiles": sum(1 for t in self.tiles if t.defect),
            "defect_area_fraction": defect_area,
            "max_defect_prob": max((t.defect_prob for t in self.tiles), default=0.0),
            "class_counts": counts,
            "threshold": self.threshold,
        }


def defect_area_fraction(crack_map: CrackMap) -> float:
    """Fraction of the image's pixels covered by at least one defect tile.

    Computed on the grid of tile edges (coordinate compression), not per pixel.
    """
    defects = [t for t in crack_map.tiles if t.defect]
    if not defects or crack_map.width * crack_map.height == 0:
        return 0.0
    ys = np.unique([v for t in defects for v in (t.y, t.y + t.h)])
    xs = np.unique([v for t in defects for v in (t.x, t.x + t.w)])
    covered = np.zeros((len(ys) - 1, len(xs) - 1), dtype=bool)
    for t in defects:
        i0, i1 = np.searchsorted(ys, [t.y, t.y + t.h])
        j0, j1 = np.searchsorted(xs, [t.x, t.x + t.w])
        covered[i0:i1, j0:j1] = True
    areas = np.outer(np.diff(ys), np.diff(xs))
    return float((areas * covered).sum() / (crack_map.width * crack_map.height))


def cell_heatmap(grid: TileGrid, values: np.ndarray, cell: int) -> np.ndarray:
    """Mean of the tile values over every tile that overlaps each cell.

    Args:
        grid: the tiling.  values: (len(grid),) one value per tile, row-major.
        cell: cell size in pixels (the stride by default).

    Returns:
        (ceil(H / cell), ceil(W / cell)) float32.
    """
    ny, nx = -(-grid.height // cell), -(-grid.width // cell)
    total = np.zeros((ny, nx), dtype=np.float64)
    count = np.zeros((ny, nx), dtype=np.float64)
    for index in range(len(grid)):
        _, _, y, x = grid.position(index)
        y0, y1 = y // cell, -(-(y + grid.tile_h) // cell)
        x0, x1 = x // cell, -(-(x + grid.tile_w) // cell)
        total[y0:y1, x0:x1] += values[index]
        count[y0:y1, x0:x1] += 1
    return (total / np.maximum(count, 1)).astype(np.float32)


def geojson(crack_map: CrackMap) -> dict[str, Any]:
    """Defect tiles as GeoJSON polygons in pixel coordinates (x right, y down)."""
    features = []
    for t in crack_map.tiles:
        if not t.defect:
            continue
        ring = [[t.x, t.y], [t.x + t.w, t.y], [t.x + t.w, t.y + t.h], [t.x, t.y + t.h], [t.x, t.y]]
        features.append(
            {
                "type": "Feature",
                "geometry": {"type": "Polygon", "coordinates": [ring]},
                "properties": {
                    "row": t.row,
                    "col": t.col,
                    "defect_prob": t.defect_prob,
                    "probs": t.probs,
                },
            }
        )
    return {
        "type": "FeatureCollection",
        "properties": {"crs": "pixel", "width": crack_map.width, "height": crack_map.height},
        "features": features,
    }
