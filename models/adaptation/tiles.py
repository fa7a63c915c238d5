"""A survey's tiles as the model sees them: each photo cut on the model's grid, resized."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from PIL import Image

from models.checkpoint import Checkpoint
from models.inference.inspection_grid import inspection_grid
from models.inference.tiling import tile_range

PhotoSource = Image.Image | Callable[[], Image.Image]  # a photo, or how to decode it


def survey_tiles(
    photos: Sequence[PhotoSource], checkpoint: Checkpoint, max_tiles: int, seed: int = 0
) -> torch.Tensor:
    """Up to max_tiles tiles of the photos as inference cuts them (inspection_grid: a masks
    model's tile_px at stride tile/2, else its input size without overlap), resized to its
    input size.

    Each photo gives an equal share of max_tiles (the first ones one more when it does not
    divide), drawn at random (seeded) among its tiles, or all of them when it has fewer.
    Photos given as callables are decoded one at a time and dropped after cutting, so
    memory holds one photo and the tiles.

    Args:
        photos: RGB images, EXIF-oriented as inference sees them, or callables returning one.
        checkpoint: the model whose grid and input size to use.
        max_tiles: the most tiles returned, >= 1.

    Returns:
        (N, 3, S, S) uint8, N <= max_tiles, S = checkpoint.input_size.
    """
    if max_tiles < 1:
        raise ValueError(f"max_tiles must be >= 1, got {max_tiles}")
    if not photos:
        raise ValueError("no photos to adapt to")
    g = torch.Generator().manual_seed(seed)
    share, extra = divmod(max_tiles, len(photos))
    out = []
    for k, source in enumerate(photos):
        quota = share + (1 if k < extra else 0)
        if quota == 0:
            continue
        photo = source if isinstance(source, Image.Image) else source()
        grid = inspection_grid(checkpoint, photo.height, photo.width)
        chosen = torch.randperm(len(grid), generator=g)[:quota].sort().values.tolist()
        out += [tile_range(photo, grid, index, 1, checkpoint.input_size) for index in chosen]
        del photo
    if not out:
        raise ValueError("the photos gave no tiles")
    return torch.cat(out)
