"""The crack map of one image: its tile table, a per-cell heatmap and a summary.

Plain dataclasses and arrays: app/ turns them into the versioned pydantic schema.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models.inference.tile_table import TileResult, TileTable
from models.inference.tiling import TileGrid

MAX_HEATMAP_CELLS = 65_536  # heatmap cells per map, at most: the cell grows on big grids


@dataclass
class CrackMap:
    table: TileTable  # the N tiles' probabilities (N = rows * cols) and the grid
    input_size: int
    heatmap: np.ndarray  # (cells_y, cells_x) float32 mean defect probability per cell
    cell: int  # heatmap cell size in pixels
    model: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def grid(self) -> TileGrid:
        return self.table.grid

    @property
    def width(self) -> int:
        return self.grid.width

    @property
    def height(self) -> int:
        return self.grid.height

    @property
    def tile(self) -> int:
        return self.grid.tile

    @property
    def stride(self) -> int:
        return self.grid.stride

    @property
    def rows(self) -> int:
        return self.grid.rows

    @property
    def cols(self) -> int:
        return self.grid.cols

    @property
    def classes(self) -> list[str]:
        return self.table.classes

    @property
    def defect_classes(self) -> list[str]:
        return self.table.defect_classes

    @property
    def threshold(self) -> float:
        return self.table.threshold

    def tiles(self) -> list[TileResult]:
        """Every tile as a TileResult, row-major (small maps, tests; big ones page the table)."""
        return list(self.table.tiles())

    def summary(self) -> dict[str, Any]:
        """Tiles, defect tiles, defect area fraction, max probability, per-class counts."""
        table = self.table
        winners = np.bincount(table.probs.argmax(1), minlength=len(table.classes))
        return {
            "tiles": len(table),
            "defect_tiles": int(table.defect.sum()),
            "defect_area_fraction": defect_area_fraction(table),
            "max_defect_prob": float(table.defect_probs.max()),
            "class_counts": {c: int(n) for c, n in zip(table.classes, winners, strict=True)},
            "threshold": table.threshold,
        }


def _span_counts(
    ny: int, nx: int, y0: np.ndarray, y1: np.ndarray, x0: np.ndarray, x1: np.ndarray, w: np.ndarray
) -> np.ndarray:
    """(ny, nx) float64: sum of w[k] over the boxes [y0[k], y1[k]) x [x0[k], x1[k]) covering each cell.

    A 2-D difference array and two cumulative sums: O(boxes + cells), no loop over boxes.
    """
    diff = np.zeros((ny + 1, nx + 1), dtype=np.float64)
    np.add.at(diff, (y0, x0), w)
    np.add.at(diff, (y1, x0), -w)
    np.add.at(diff, (y0, x1), -w)
    np.add.at(diff, (y1, x1), w)
    return diff.cumsum(0).cumsum(1)[:ny, :nx]


def _tile_origins(grid: TileGrid) -> tuple[np.ndarray, np.ndarray]:
    """(N,) y and x of each tile's top-left corner, row-major."""
    ys = np.repeat(np.asarray(grid.ys, dtype=np.int64), grid.cols)
    xs = np.tile(np.asarray(grid.xs, dtype=np.int64), grid.rows)
    return ys, xs


def defect_area_fraction(table: TileTable) -> float:
    """Fraction of the image's pixels covered by at least one defect tile.

    Computed on the grid of tile edges (coordinate compression), not per pixel.
    """
    grid, defect = table.grid, table.defect
    if not defect.any() or grid.width * grid.height == 0:
        return 0.0
    ys, xs = _tile_origins(grid)
    ys, xs = ys[defect], xs[defect]
    edges_y = np.unique(np.concatenate([ys, ys + grid.tile_h]))
    edges_x = np.unique(np.concatenate([xs, xs + grid.tile_w]))
    covered = (
        _span_counts(
            len(edges_y) - 1,
            len(edges_x) - 1,
            np.searchsorted(edges_y, ys),
            np.searchsorted(edges_y, ys + grid.tile_h),
            np.searchsorted(edges_x, xs),
            np.searchsorted(edges_x, xs + grid.tile_w),
            np.ones(len(ys)),
        )
        > 0.5
    )
    areas = np.outer(np.diff(edges_y), np.diff(edges_x))
    return float((areas * covered).sum() / (grid.width * grid.height))


def heatmap_cell(grid: TileGrid, max_cells: int = MAX_HEATMAP_CELLS) -> int:
    """The heatmap cell side: the stride, grown until the map has at most `max_cells` cells."""
    cell = grid.stride
    while -(-grid.height // cell) * -(-grid.width // cell) > max_cells:
        cell = max(cell + 1, int(cell * 1.25))
    return cell


def cell_heatmap(grid: TileGrid, values: np.ndarray, cell: int) -> np.ndarray:
    """Mean of the tile values over every tile that overlaps each cell.

    Args:
        grid: the tiling.  values: (len(grid),) one value per tile, row-major.
        cell: cell size in pixels (the stride by default).

    Returns:
        (ceil(H / cell), ceil(W / cell)) float32.
    """
    ny, nx = -(-grid.height // cell), -(-grid.width // cell)
    ys, xs = _tile_origins(grid)
    spans = (ys // cell, -(-(ys + grid.tile_h) // cell), xs // cell, -(-(xs + grid.tile_w) // cell))
    total = _span_counts(ny, nx, *spans, np.asarray(values, dtype=np.float64))
    count = _span_counts(ny, nx, *spans, np.ones(len(grid)))
    return (total / np.maximum(np.rint(count), 1)).astype(np.float32)


def geojson(crack_map: CrackMap) -> dict[str, Any]:
    """Defect tiles as GeoJSON polygons in pixel coordinates (x right, y down)."""
    return geojson_of(crack_map.table, crack_map.width, crack_map.height)


def geojson_of(table: TileTable, width: int, height: int) -> dict[str, Any]:
    """The table's defect tiles (p_defect >= table.threshold) as a GeoJSON FeatureCollection
    of pixel-coordinate polygons on a width x height photo."""
    features = []
    for t in table.tiles(table.select(defect=True)):
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
        "properties": {"crs": "pixel", "width": width, "height": height},
        "features": features,
    }
