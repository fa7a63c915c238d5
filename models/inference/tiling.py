"""Sliding-window tiling: tile positions, and bounded batches of tiles as tensors.

Positions along an axis of length L with tile extent t and stride s are
0, s, 2s, ... and a last one shifted to L − t, so every pixel is covered and no
tile leaves the image (no padding with made-up pixels). An axis shorter than the
tile gives one tile of extent L, resized to the model's input like any other.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from models.data.masks import tile_origins


def axis_starts(length: int, tile: int, stride: int) -> list[int]:
    """Start offsets along one axis (see the module docstring)."""
    if length < 1 or tile < 1 or stride < 1:
        raise ValueError(f"length, tile and stride must be >= 1, got {length}, {tile}, {stride}")
    return tile_origins(length, tile, stride)


@dataclass(frozen=True)
class TileGrid:
    """Where the tiles of one image lie: rows x cols tiles of extent (tile_h, tile_w)."""

    height: int
    width: int
    tile: int
    stride: int
    ys: tuple[int, ...]
    xs: tuple[int, ...]

    @property
    def tile_h(self) -> int:
        return min(self.tile, self.height)

    @property
    def tile_w(self) -> int:
        return min(self.tile, self.width)

    @property
    def rows(self) -> int:
        return len(self.ys)

    @property
    def cols(self) -> int:
        return len(self.xs)

    def __len__(self) -> int:
        return self.rows * self.cols

    def position(self, index: int) -> tuple[int, int, int, int]:
        """(row, col, y, x) of tile `index` in row-major order."""
        row, col = divmod(index, self.cols)
        return row, col, self.ys[row], self.xs[col]


def make_grid(height: int, width: int, tile: int, stride: int | None = None) -> TileGrid:
    """The grid for an image; stride defaults to the tile (no overlap) and must be in [tile/4, tile]."""
    stride = tile if stride is None else stride
    if tile < 8:
        raise ValueError(f"tile must be >= 8 px, got {tile}")
    if not tile / 4 <= stride <= tile:
        raise ValueError(
            f"stride must lie between tile/4 and tile (0 to 75% overlap), got {stride} for tile {tile}"
        )
    return TileGrid(
        height,
        width,
        tile,
        stride,
        tuple(axis_starts(height, tile, stride)),
        tuple(axis_starts(width, tile, stride)),
    )


def crop(image: torch.Tensor | Image.Image, y: int, x: int, h: int, w: int) -> torch.Tensor:
    """One (3, h, w) uint8 tile from a (3, H, W) tensor (a view) or an RGB PIL image (a small copy)."""
    if isinstance(image, torch.Tensor):
        return image[:, y : y + h, x : x + w]
    return torch.from_numpy(
        np.asarray(image.crop((x, y, x + w, y + h)), dtype=np.uint8).copy()
    ).permute(2, 0, 1)


def resize_tiles(batch: torch.Tensor, size: int) -> torch.Tensor:
    """(B, 3, h, w) uint8 tiles -> (B, 3, size, size) uint8: bilinear, antialiased when shrinking."""
    th, tw = batch.shape[-2:]
    if (th, tw) == (size, size):
        return batch
    resized = F.interpolate(
        batch.float(),
        size=(size, size),
        mode="bilinear",
        antialias=th > size or tw > size,
        align_corners=False,
    )
    return resized.round_().clamp_(0, 255).to(torch.uint8)


def tile_range(
    image: torch.Tensor | Image.Image, grid: TileGrid, first: int, count: int, input_size: int
) -> torch.Tensor:
    """Tiles first .. first + count - 1 (row-major) as (count, 3, input_size, input_size) uint8,
    on the image's device when it is a tensor (crops are views until they are stacked)."""
    th, tw = grid.tile_h, grid.tile_w
    crops = []
    for index in range(first, first + count):
        _, _, y, x = grid.position(index)
        crops.append(crop(image, y, x, th, tw))
    return resize_tiles(torch.stack(crops), input_size)


def tile_batches(
    image: torch.Tensor | Image.Image, grid: TileGrid, batch_size: int, input_size: int
) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield (first index, (B, 3, input_size, input_size) uint8) batches in row-major order.

    `image` is a (3, H, W) uint8 tensor or an RGB PIL image. Only one batch of
    tiles is materialised at a time, so memory stays bounded.
    """
    for first in range(0, len(grid), batch_size):
        yield first, tile_range(image, grid, first, min(batch_size, len(grid) - first), input_size)


Piece = tuple[int, int, int]  # (photo k, first tile, tile count)


def shared_batches(
    images: list[torch.Tensor | Image.Image], grids: list[TileGrid], batch_size: int, size: int
) -> Iterator[tuple[list[Piece], torch.Tensor]]:
    """Batches that run on from one photo's tiles into the next: (pieces, (B, 3, S, S) uint8),
    each piece naming the tiles of one photo that the batch holds, in order. Several small
    photos then fill one forward pass instead of one half-empty pass each."""
    pieces: list[Piece] = []
    parts: list[torch.Tensor] = []
    filled = 0
    for k, (image, grid) in enumerate(zip(images, grids, strict=True)):
        first = 0
        while first < len(grid):
            count = min(batch_size - filled, len(grid) - first)
            parts.append(tile_range(image, grid, first, count, size))
            pieces.append((k, first, count))
            filled += count
            first += count
            if filled == batch_size:
                yield pieces, _joined(parts)
                pieces, parts, filled = [], [], 0
    if pieces:
        yield pieces, _joined(parts)


def _joined(parts: list[torch.Tensor]) -> torch.Tensor:
    """One batch from its parts; a batch from one photo is not copied again."""
    return parts[0] if len(parts) == 1 else torch.cat(parts)
