"""Labels as a labelled set: split by photo, tiles cut at their own pixels, read back by the loader."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from models.data import load_labelled_set
from models.data.feedback import LabelledPhoto, photo_splits, write_feedback_set
from models.inference import make_grid


def test_photo_splits_are_seeded_and_hold_every_split():
    ids = [f"p{i}" for i in range(11)]
    splits = photo_splits(ids, seed=0)
    assert set(splits) == set(ids) and splits == photo_splits(reversed(ids), seed=0)
    counts = {s: sum(v == s for v in splits.values()) for s in ("train", "val", "test")}
    assert counts == {"train": 7, "val": 2, "test": 2}
    assert splits != photo_splits(ids, seed=1)
    assert sorted(photo_splits(["a", "b", "c"], 5).values()) == ["test", "train", "val"]
    with pytest.raises(ValueError, match="at least 3 photos"):
        photo_splits(["a", "b", "a"], 0)


def test_the_written_set_loads_with_its_split_and_exact_tiles(tmp_path):
    rng = np.random.default_rng(0)
    grid = make_grid(90, 120, 40, 20)
    photos, pixels = [], {}
    for n in range(4):
        array = rng.integers(0, 255, (90, 120, 3), dtype=np.uint8)
        labels = [(0, 0, "crack"), (1, 2, "no_crack"), (3, 4, "no_crack"), (2, 1, "crack")]
        photos.append((LabelledPhoto(f"photo{n}", grid, labels), Image.fromarray(array)))
        pixels[f"photo{n}"] = array
    splits = photo_splits(pixels, seed=2)
    summary = write_feedback_set(tmp_path / "labels.zip", iter(photos), splits)
    assert sum(summary.photos.values()) == 4
    assert sum(n for by_class in summary.tiles.values() for n in by_class.values()) == 16
    data = load_labelled_set(tmp_path / "labels.zip", defect_classes=["crack"])
    assert data.split_given and data.classes == ["crack", "no_crack"]
    for split, samples in data.splits.items():
        for sample in samples:
            photo = sample.name.rsplit("/", 1)[1].rsplit("_r", 1)[0]
            assert splits[photo] == split  # no photo in two splits
    name = f"{splits['photo1']}/no_crack/photo1_r3_c4.png"
    tile = np.asarray(Image.open(io.BytesIO(data.source.read(name))))
    y, x = grid.ys[3], grid.xs[4]
    assert np.array_equal(tile, pixels["photo1"][y : y + 40, x : x + 40])
    bad = [(LabelledPhoto("photo0", grid, [(9, 0, "crack")]), photos[0][1])]
    with pytest.raises(ValueError, match="outside"):
        write_feedback_set(tmp_path / "bad.zip", bad, splits)
