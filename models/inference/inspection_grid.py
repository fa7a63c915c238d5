"""The one rule for the grid an inspection cuts: the upload's tile cap and the predictor both
ask it, so the tiles counted before a photo is accepted are the tiles that get mapped."""

from __future__ import annotations

from typing import Protocol

from models.inference.tiling import TileGrid, make_grid


class GridFacts(Protocol):
    """What the grid depends on of a checkpoint (models.checkpoint.Checkpoint has it)."""

    input_size: int
    tile_px: int | None


def inspection_grid(
    model: GridFacts, height: int, width: int, tile: int | None = None, stride: int | None = None
) -> TileGrid:
    """The tile grid for an oriented height x width photo and the tile and stride asked for.

    Defaults: a model trained on masks cuts the tile it was trained on (tile_px) at half its
    side, as it was trained; any other model cuts tiles of its input size without overlap.
    A tile asked for without a stride is cut without overlap.

    Raises:
        ValueError: the tile or stride do not fit (see make_grid).
    """
    if tile is None and model.tile_px is not None:
        tile, stride = model.tile_px, stride or max(1, model.tile_px // 2)
    return make_grid(height, width, tile or model.input_size, stride)
