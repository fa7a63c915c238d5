"""Which tiles of a map an inspector should label next, and the tile as the model saw it.

`uncertainty` ranks tiles by the margin m_i = |p_defect(i) − t| to the operating threshold
t, smallest first; `random` ranks them in a seeded random order; `mixed` interleaves the
two (uncertain, random, uncertain, ...), so half the labels are a fair sample of the photo
to set the threshold on, and half sit where the model hesitates. Either way tiles are then
taken greedily down the ranking, skipping any that overlaps a tile already taken, so the
picks are spread over the photo and no two show the same pixels.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
from PIL import Image

from models.inference.tile_table import TileTable
from models.inference.tiling import TileGrid, crop, resize_tiles

STRATEGIES = ("uncertainty", "random", "mixed")


def review_order(
    defect_probs: np.ndarray, strategy: str, threshold: float, seed: int | None = None
) -> np.ndarray:
    """(N,) indices into the (N,) defect probabilities, the most useful to label first."""
    if strategy == "uncertainty":
        margin = np.abs(defect_probs.astype(np.float64) - threshold)
        return np.argsort(margin, kind="stable")
    if strategy == "random":
        return np.random.default_rng(seed).permutation(len(defect_probs))
    if strategy == "mixed":
        uncertain = review_order(defect_probs, "uncertainty", threshold)
        shuffled = review_order(defect_probs, "random", threshold, seed)
        both = np.stack([uncertain, shuffled], axis=1).reshape(-1)  # u0, r0, u1, r1, ...
        _, first = np.unique(both, return_index=True)
        return both[np.sort(first)]  # each tile at its first place
    raise ValueError(f"unknown review strategy {strategy!r}: use one of {STRATEGIES}")


def pick_for_review(
    table: TileTable,
    limit: int,
    strategy: str = "uncertainty",
    threshold: float | None = None,
    labelled: Collection[tuple[int, int]] = (),
    seed: int | None = None,
) -> list[int]:
    """Up to `limit` row-major tile indices to label: ranked, unlabelled, none overlapping.

    Args:
        table: the map's tiles.  limit: how many to pick, at most.
        strategy: "uncertainty" or "random".  threshold: t (default: the table's).
        labelled: (row, col) of tiles that already have a label; they are skipped.
        seed: the random order's seed.
    """
    if limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    grid = table.grid
    taken = set(labelled)
    ys, xs = np.empty(limit, dtype=np.int64), np.empty(limit, dtype=np.int64)
    picked: list[int] = []
    threshold = table.threshold if threshold is None else threshold
    order = review_order(table.defect_probs, strategy, threshold, seed)
    for index in order:
        if len(picked) == limit:
            break
        row, col, y, x = grid.position(int(index))
        if (row, col) in taken:
            continue
        n = len(picked)
        if n and np.any((np.abs(ys[:n] - y) < grid.tile_h) & (np.abs(xs[:n] - x) < grid.tile_w)):
            continue
        ys[n], xs[n] = y, x
        picked.append(int(index))
    return picked


def tile_crop(image: Image.Image, grid: TileGrid, row: int, col: int, size: int) -> Image.Image:
    """Tile (row, col) of the photo resized to the model's input, as inference feeds it
    (the crop and resize of `tiling.tile_batches`)."""
    if not (0 <= row < grid.rows and 0 <= col < grid.cols):
        raise ValueError(f"tile ({row}, {col}) lies outside the {grid.rows} x {grid.cols} grid")
    tile = crop(image, grid.ys[row], grid.xs[col], grid.tile_h, grid.tile_w)[None]
    return Image.fromarray(resize_tiles(tile, size)[0].permute(1, 2, 0).numpy())
