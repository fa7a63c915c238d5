"""Per-tile results of one crack map, held compactly: one row of class probabilities per tile.

A map of N tiles over C classes is an (N, C) float32 array plus the grid it was cut
with, so 250,000 tiles take 2 MB rather than 250,000 Python objects. Tile positions
are not stored per tile: tile i (row-major) lies at (xs[i % cols], ys[i // cols]).

The same table is what the service stores (`to_npz`, a NumPy .npz archive with no
pickled objects) and what the paged tiles route reads back (`from_npz`).
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from models.inference.tiling import TileGrid

NPZ_FORMAT = "crackscan.tiles/1"


@dataclass
class TileResult:
    """One tile, as the API and the CLI write it."""

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
class TileTable:
    """The tiles of one map.

    Attributes:
        grid: where the tiles lie (rows x cols, row-major).
        classes: the C class names, in the order of `probs`' columns.
        defect_classes: the classes whose summed probability is the defect probability.
        threshold: a tile is a defect when its defect probability is >= this.
        probs: (N, C) float32 calibrated class probabilities, N = rows * cols.
        defect_probs: (N,) float32, p_defect(i) = sum over defect classes c of probs[i, c].
    """

    grid: TileGrid
    classes: list[str]
    defect_classes: list[str]
    threshold: float
    probs: np.ndarray
    defect_probs: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.grid)
        if self.probs.shape != (n, len(self.classes)) or self.defect_probs.shape != (n,):
            raise ValueError(
                f"{n} tiles of {len(self.classes)} classes need probs ({n}, {len(self.classes)}) "
                f"and defect_probs ({n},), got {self.probs.shape} and {self.defect_probs.shape}"
            )

    def __len__(self) -> int:
        return len(self.grid)

    @property
    def defect(self) -> np.ndarray:
        """(N,) bool: p_defect >= threshold."""
        return self.defect_probs >= self.threshold

    def tile(self, index: int) -> TileResult:
        """Tile `index` (row-major) as a TileResult."""
        grid = self.grid
        row, col, y, x = grid.position(index)
        p = float(self.defect_probs[index])
        return TileResult(
            row=row,
            col=col,
            x=x,
            y=y,
            w=grid.tile_w,
            h=grid.tile_h,
            probs={c: float(v) for c, v in zip(self.classes, self.probs[index], strict=True)},
            defect_prob=p,
            defect=p >= self.threshold,
        )

    def tiles(self, indices: Iterable[int] | None = None) -> Iterator[TileResult]:
        """TileResults one at a time (all tiles in row-major order, or the given indices)."""
        for index in range(len(self)) if indices is None else indices:
            yield self.tile(int(index))

    def select(self, defect: bool | None = None, min_prob: float = 0.0) -> np.ndarray:
        """Row-major indices of the tiles with that defect flag (None: either) and p_defect >= min_prob."""
        keep = self.defect_probs >= min_prob
        if defect is not None:
            keep &= self.defect == defect
        return np.flatnonzero(keep)

    def to_npz(self) -> bytes:
        """The table as an .npz archive (no pickles), read back by `from_npz`."""
        grid = self.grid
        buffer = io.BytesIO()
        np.savez_compressed(
            buffer,
            format=np.array(NPZ_FORMAT),
            shape=np.array([grid.height, grid.width, grid.tile, grid.stride], dtype=np.int64),
            ys=np.asarray(grid.ys, dtype=np.int64),
            xs=np.asarray(grid.xs, dtype=np.int64),
            classes=np.array(self.classes, dtype=str),
            defect_classes=np.array(self.defect_classes, dtype=str),
            threshold=np.array(self.threshold, dtype=np.float64),
            probs=self.probs.astype(np.float32, copy=False),
            defect_probs=self.defect_probs.astype(np.float32, copy=False),
        )
        return buffer.getvalue()

    @classmethod
    def from_npz(cls, data: bytes) -> TileTable:
        """Read a table written by `to_npz`; ValueError when it is not one."""
        try:
            archive = np.load(io.BytesIO(data), allow_pickle=False)
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
            raise ValueError(f"not a tile table archive: {exc}") from exc
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise ValueError("not a tile table archive: a bare array, not an .npz")
        with archive:
            try:
                if str(archive["format"]) != NPZ_FORMAT:
                    raise ValueError(f"{archive['format']} is not {NPZ_FORMAT}")
                height, width, tile, stride = (int(v) for v in archive["shape"])
                grid = TileGrid(
                    height,
                    width,
                    tile,
                    stride,
                    tuple(int(v) for v in archive["ys"]),
                    tuple(int(v) for v in archive["xs"]),
                )
                return cls(
                    grid=grid,
                    classes=[str(c) for c in archive["classes"]],
                    defect_classes=[str(c) for c in archive["defect_classes"]],
                    threshold=float(archive["threshold"]),
                    probs=archive["probs"],
                    defect_probs=archive["defect_probs"],
                )
            except (KeyError, ValueError, TypeError, zipfile.BadZipFile) as exc:
                raise ValueError(f"not a tile table archive: {exc}") from exc
