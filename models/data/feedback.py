"""An inspector's tile labels as a labelled set: tiles cut from the photos, split by photo.

The set is a zip in the `split` layout (``train|val|test/<class>/<photo>_r<row>_c<col>.png``),
so training, evaluation and `crackscan labels export` read it like any other set. Each tile
is cut at its own pixels (the training pipeline resizes it, as inference does), and every
tile of one photo lands in the split of that photo: no test tile has a neighbour in training.
"""

from __future__ import annotations

import io
import random
import zipfile
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from models.data.class_names import check_class_names
from models.inference.tiling import TileGrid, crop

MIN_FEEDBACK_PHOTOS = 3  # one each for train, validation and the held-back test


@dataclass
class LabelledPhoto:
    """The labels of one photo: (row, col, class) of tiles of its map's grid."""

    photo_id: str
    grid: TileGrid
    labels: list[tuple[int, int, str]]


@dataclass
class FeedbackSetSummary:
    photos: dict[str, int] = field(default_factory=dict)  # split -> photos
    tiles: dict[str, dict[str, int]] = field(default_factory=dict)  # split -> class -> tiles


def photo_splits(photo_ids: Iterable[str], seed: int) -> dict[str, str]:
    """Each photo's split: a seeded shuffle, then about 3:1:1 with at least one in val and test.

    Raises:
        ValueError: with fewer than MIN_FEEDBACK_PHOTOS photos.
    """
    ids = sorted(set(photo_ids))
    if len(ids) < MIN_FEEDBACK_PHOTOS:
        raise ValueError(
            f"labels on at least {MIN_FEEDBACK_PHOTOS} photos are needed (one each for training, "
            f"validation and the held-back test, as the split is by photo); they cover {len(ids)}"
        )
    random.Random(seed).shuffle(ids)
    held = max(1, round(len(ids) / 5))
    splits = {i: "test" for i in ids[:held]}
    splits |= {i: "val" for i in ids[held : 2 * held]}
    return splits | {i: "train" for i in ids[2 * held :]}


def write_feedback_set(
    path: Path,
    photos: Iterable[tuple[LabelledPhoto, Image.Image]],
    splits: dict[str, str],
) -> FeedbackSetSummary:
    """Write the labelled tiles of each (labels, decoded photo) into a `split`-layout zip.

    Photos are consumed one at a time, so only one is decoded at once.
    """
    summary = FeedbackSetSummary()
    counts: Counter[tuple[str, str]] = Counter()
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for labelled, image in photos:
            split = splits[labelled.photo_id]
            summary.photos[split] = summary.photos.get(split, 0) + 1
            grid = labelled.grid
            check_class_names(sorted({label for _, _, label in labelled.labels}), "labels")
            for row, col, label in labelled.labels:
                if not (0 <= row < grid.rows and 0 <= col < grid.cols):
                    raise ValueError(
                        f"photo {labelled.photo_id}: tile ({row}, {col}) lies outside its "
                        f"{grid.rows} x {grid.cols} grid"
                    )
                tile = crop(image, grid.ys[row], grid.xs[col], grid.tile_h, grid.tile_w)
                buffer = io.BytesIO()
                Image.fromarray(tile.permute(1, 2, 0).numpy()).save(buffer, format="PNG")
                name = f"{split}/{label}/{labelled.photo_id}_r{row}_c{col}.png"
                archive.writestr(name, buffer.getvalue())
                counts[(split, label)] += 1
    for (split, label), n in sorted(counts.items()):
        summary.tiles.setdefault(split, {})[label] = n
    return summary
