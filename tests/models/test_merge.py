"""Several labelled sets trained as one: classes reconciled, each set's split kept."""

from __future__ import annotations

import shutil

import pytest

from models.data import load_labelled_set, load_labelled_sets, load_tiles
from models.synthetic import write_tile_set
from tests.models.test_masks import TILE, _naming_set


def test_tile_set_and_masks_set_merge_into_crack_and_no_crack(tmp_path, tiny_set):
    walls = tmp_path / "walls"
    shutil.copytree(tiny_set / "crack", walls / "Positive")
    shutil.copytree(tiny_set / "no_crack", walls / "Negative")
    masks = _naming_set(tmp_path / "masks")
    merged = load_labelled_sets([walls, masks], mask_tile=TILE, seed=2)
    assert merged.classes == ["crack", "no_crack"] and merged.defect_classes == ["crack"]
    assert merged.tile_px == TILE and len(merged.parts) == 2
    alone = [load_labelled_set(walls, seed=2), load_labelled_set(masks, mask_tile=TILE, seed=2)]
    for split in ("train", "val", "test"):
        got = merged.splits[split]
        for index, part in enumerate(alone):
            mine = [s for s in got if s.name.startswith(f"{index}:")]
            assert [s.name.split(":", 1)[1] for s in mine] == [s.name for s in part.splits[split]]
            # Positive -> crack (0), Negative -> no_crack (1); masks keep theirs.
            want = [part.classes[s.label] for s in part.splits[split]]
            assert [merged.classes[s.label] for s in mine] == [
                "crack" if c in part.defect_classes else "no_crack" for c in want
            ]
    images, labels = load_tiles(merged.source, merged.splits["val"][:40], 32)
    assert images.shape == (min(40, len(merged.splits["val"])), 3, 32, 32)


def test_sets_with_the_same_classes_keep_them(tmp_path):
    a = write_tile_set(
        tmp_path / "a", per_class=10, size=32, classes=("crack", "no_crack", "scratch"), seed=1
    )
    b = write_tile_set(
        tmp_path / "b", per_class=10, size=32, classes=("crack", "no_crack", "scratch"), seed=2
    )
    merged = load_labelled_sets([a, b])
    assert merged.classes == ["crack", "no_crack", "scratch"]
    assert sum(len(v) for v in merged.splits.values()) == 60


def test_sets_that_cannot_be_reconciled_are_refused(tmp_path, tiny_set):
    three = write_tile_set(
        tmp_path / "three", per_class=10, size=32, classes=("crack", "no_crack", "scratch"), seed=1
    )
    with pytest.raises(ValueError, match="cannot be merged"):
        load_labelled_sets([tiny_set, three])
    with pytest.raises(ValueError, match="at least one"):
        load_labelled_sets([])
