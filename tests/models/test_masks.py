"""The masks layout: pairing in every accepted naming, the tile rule, zips and the photo split."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from models.data import load_labelled_set, load_tiles
from models.data.masks import label_tiles, list_photos, tile_origins
from tests.conftest import shared_data

TILE = 32


def _photo(seed: int, size: tuple[int, int] = (128, 96)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(90, 160, (size[1], size[0], 3), dtype=np.uint8))


def _mask(size: tuple[int, int] = (128, 96), crack_rows: tuple[int, ...] = (40,)) -> Image.Image:
    """A horizontal 1-px crack along each given row, across the whole photo."""
    arr = np.zeros((size[1], size[0]), dtype=np.uint8)
    for row in crack_rows:
        arr[row, :] = 255
    return Image.fromarray(arr)


def _write_pair(root: Path, images: str, masks: str, stem: str, tail: str, ext: str, seed: int):
    (root / images).mkdir(parents=True, exist_ok=True)
    (root / masks).mkdir(parents=True, exist_ok=True)
    _photo(seed).save(root / images / f"{stem}.jpg", quality=95)
    mask = _mask(crack_rows=(40,) if seed % 3 else ())
    fmt = {"png": "PNG", "jpg": "JPEG", "bmp": "BMP"}[ext]
    mask.convert("L").save(
        root / masks / f"{stem}{tail}.{ext}", fmt, **({"quality": 100} if ext == "jpg" else {})
    )


def _naming_set(root: Path) -> Path:
    """Every accepted naming at once: both folder spellings, every tail and mask format."""
    namings = [
        ("image", "mask", "", "png"),
        ("image", "mask", "_mask", "bmp"),
        ("image", "mask", "_gt", "jpg"),
        ("image", "mask", "_label", "png"),
    ]
    for i in range(12):
        images, masks, tail, ext = namings[i % 4]
        _write_pair(root, images, masks, f"p{i:02d}", tail, ext, seed=i)
    return root


def test_tile_rule_on_a_known_mask():
    mask = np.zeros((64, 96), dtype=bool)
    mask[10, :] = True  # a 1-px crack along row 10: 32 px inside each tile it crosses
    mask[50, 0:5] = True  # 5 crack pixels near the bottom-left: too few for a crack tile
    tiles, counts = label_tiles(mask, 32)
    assert tile_origins(96, 32, 16) == [0, 16, 32, 48, 64]
    assert tile_origins(64, 32, 16) == [0, 16, 32]
    labels = {(x, y): lab for x, y, lab in tiles}
    assert all(labels[(x, 0)] == 0 for x in (0, 16, 32, 48, 64))  # crack: 32 px >= side 32
    assert (0, 32) not in labels  # 5 crack pixels: left out
    assert labels[(0, 16)] == 1 and labels[(16, 32)] == 1  # no crack pixel: no crack
    assert counts == {"crack": 5, "left_out": 1, "no_crack": 9}


def test_every_naming_pairs_and_unpaired_files_are_counted(tmp_path):
    root = _naming_set(tmp_path / "set")
    (root / "image" / "orphan.jpg").write_bytes((root / "image" / "p00.jpg").read_bytes())
    _mask().save(root / "mask" / "lonely_mask.png")
    listing = list_photos(sorted(p.relative_to(root).as_posix() for p in root.rglob("*.*")))
    assert len(listing.photos) == 12
    assert sorted(listing.unpaired) == ["image/orphan.jpg", "mask/lonely_mask.png"]
    data = load_labelled_set(root, mask_tile=TILE)
    assert data.layout == "masks" and data.classes == ["crack", "no_crack"]
    assert data.tile_px == TILE and len(data.skipped) == 2
    summary = data.summary()
    assert summary["tiles"]["crack"] == 8 * 2 * 7  # 8 cracked photos: 2 tile rows x 7 columns
    assert set(summary["tiles"]) == {"crack", "no_crack", "left_out"}
    assert sum(summary["photos"].values()) == 12


def test_plural_folders_given_splits_and_zip(tmp_path):
    root = tmp_path / "split"
    for split, seeds in (("train", range(0, 6)), ("val", range(6, 9)), ("test", range(9, 12))):
        for i in seeds:
            _write_pair(root / split, "images", "masks", f"s{i}", "_mask", "png", seed=i)
    archive = tmp_path / "split.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(root.rglob("*.*")):
            zf.write(path, f"wrapper/{path.relative_to(root).as_posix()}")
    for source in (root, archive):
        data = load_labelled_set(source, mask_tile=TILE)
        assert data.split_given
        photos = {split: {s.name.split("/")[-3] for s in v} for split, v in data.splits.items()}
        assert photos == {"train": {"train"}, "val": {"val"}, "test": {"test"}}
        assert data.summary()["photos"] == {"train": 6, "val": 3, "test": 3}


def test_split_is_by_photo_and_seeded(tmp_path):
    root = tmp_path / "many"
    for i in range(30):
        _write_pair(root, "image", "mask", f"q{i:02d}", "", "png", seed=i)
    data = load_labelled_set(root, mask_tile=TILE, seed=3)
    names = {split: {s.name for s in v} for split, v in data.splits.items()}
    assert not (
        names["train"] & names["val"]
        or names["train"] & names["test"]
        or names["val"] & names["test"]
    )
    assert [len(names[s]) for s in ("train", "val", "test")] == [18, 6, 6]
    assert load_labelled_set(root, mask_tile=TILE, seed=3).splits == data.splits
    assert load_labelled_set(root, mask_tile=TILE, seed=4).splits != data.splits


def test_tiles_are_cut_from_the_photo_as_stored(tmp_path):
    root = _naming_set(tmp_path / "set")
    data = load_labelled_set(root, mask_tile=TILE)
    sample = data.splits["train"][0]
    images, labels = load_tiles(data.source, [sample], TILE)
    x, y, w, h = sample.box
    photo = np.asarray(Image.open(root / sample.name).convert("RGB"))
    assert np.array_equal(images[0].permute(1, 2, 0).numpy(), photo[y : y + h, x : x + w])


def test_unreadable_and_mismatched_photos_are_skipped(tmp_path):
    root = _naming_set(tmp_path / "set")
    (root / "image" / "p01.jpg").write_bytes(b"not a jpeg")
    _mask(size=(64, 64)).save(root / "mask" / "p02_gt.jpg")  # overwrite: wrong size
    (root / "mask" / "p02_gt.jpg").unlink()
    _mask(size=(64, 64)).save(root / "mask" / "p02.png")
    data = load_labelled_set(root, mask_tile=TILE)
    reasons = dict(data.skipped)
    assert "unreadable" in reasons["image/p01.jpg"]
    assert "mask is 64x64" in reasons["image/p02.jpg"]


def test_clear_errors(tmp_path):
    root = tmp_path / "clean"
    for i in range(3):
        (root / "image").mkdir(parents=True, exist_ok=True)
        (root / "mask").mkdir(parents=True, exist_ok=True)
        _photo(i).save(root / "image" / f"c{i}.jpg")
        _mask(crack_rows=()).save(root / "mask" / f"c{i}.png")
    with pytest.raises(ValueError, match="no tile is crack"):
        load_labelled_set(root, mask_tile=TILE)
    with pytest.raises(ValueError, match="mask tile"):
        load_labelled_set(_naming_set(tmp_path / "set"), mask_tile=4)


@pytest.mark.shared_data
def test_crackforest_loads_with_a_photo_level_split():
    data = load_labelled_set(shared_data("cfd"), verify_images=False)
    summary = data.summary()
    assert summary["layout"] == "masks" and summary["tile_px"] == 64
    assert sum(summary["photos"].values()) == 118
    names = [{s.name for s in v} for v in data.splits.values()]
    assert not (names[0] & names[1] or names[0] & names[2] or names[1] & names[2])
    assert summary["tiles"]["crack"] > 1000 and summary["tiles"]["left_out"] > 0
