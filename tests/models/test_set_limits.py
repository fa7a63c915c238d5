"""A set's photos and masks are decoded under the pixel cap, and its tiles are counted from
the headers before anything is decoded (#27 item 9)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from models.data import load_labelled_set
from models.data.mask_set import SetTooLargeError
from tests.models.test_zip_damage import png, tile_set_zip


def png_of(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def masks_zip(path: Path, side: int, photos: int = 1, mask: bytes | None = None) -> Path:
    """Photos of side x side px with masks holding one crack line (or the given mask bytes)."""
    crack = np.zeros((side, side), dtype=np.uint8)
    crack[:, side // 3 : side // 3 + 3] = 255
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for i in range(photos):
            photo = Image.new("RGB", (side, side), (i * 40 % 256, 90, 90))
            archive.writestr(f"image/p{i}.png", png_of(photo))
            archive.writestr(f"mask/p{i}.png", mask or png_of(Image.fromarray(crack, "L")))
    return path


def test_masks_sets_load_under_their_caps(tmp_path: Path):
    data = load_labelled_set(
        masks_zip(tmp_path / "set.zip", 160, photos=5), max_pixels=160 * 160, max_tiles=5 * 16
    )
    assert data.tile_px == 64 and sum(data.tile_counts.values()) == 5 * 16


def test_a_photo_over_the_pixel_cap_is_skipped_without_decoding_its_mask(tmp_path: Path):
    path = masks_zip(tmp_path / "set.zip", 300, mask=b"\x89PNG not a mask at all")
    with pytest.raises(ValueError, match="no usable photo"):
        load_labelled_set(path, max_pixels=200 * 200)
    from models.data.mask_set import load_masks_set
    from models.data.sources import ZipSource

    with pytest.raises(ValueError, match="no usable photo"):
        load_masks_set(ZipSource(path), max_pixels=200 * 200)
    # without the cap the corrupt mask is read, and is the reason
    skipped = _skipped_reasons(path, None)
    assert "unreadable photo or mask" in skipped[0]
    assert "over the cap" in _skipped_reasons(path, 200 * 200)[0]


def _skipped_reasons(path: Path, max_pixels: int | None) -> list[str]:
    """Why the photos of a masks set were skipped (its load fails with none usable)."""
    from models.data import mask_set
    from models.data.sources import ZipSource

    source = ZipSource(path)
    listing = mask_set.list_photos(source.names())
    reasons = []
    for photo in listing.photos:
        try:
            mask_set._read_pair(source, photo, True, set(), 64, max_pixels, None, None)  # noqa: SLF001
        except mask_set._Unusable as exc:  # noqa: SLF001
            reasons.append(str(exc))
    return reasons


def test_tiles_past_the_cap_refuse_the_set_before_its_photo_is_decoded(tmp_path: Path):
    path = masks_zip(tmp_path / "set.zip", 400, mask=b"\x89PNG not a mask at all")
    with pytest.raises(SetTooLargeError, match="CRACKSCAN_MAX_SET_TILES"):
        load_labelled_set(path, mask_tile=8, max_tiles=5_000)  # 99 x 99 tiles


def test_a_tile_set_over_the_tile_cap_is_refused(tmp_path: Path):
    path = tmp_path / "set.zip"
    path.write_bytes(bytes(tile_set_zip()))
    with pytest.raises(SetTooLargeError, match="4 tiles, over the cap of 3"):
        load_labelled_set(path, max_tiles=3)
    assert load_labelled_set(path, max_tiles=4).classes == ["crack", "no_crack"]


def test_tile_images_over_the_pixel_cap_are_skipped(tmp_path: Path):
    path = tmp_path / "set.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for i, name in enumerate(["crack/a.png", "crack/b.png", "no_crack/c.png"]):
            archive.writestr(name, png(i))  # 16 x 16
        archive.writestr("no_crack/big.png", png_of(Image.new("RGB", (64, 64))))
    data = load_labelled_set(path, max_pixels=16 * 16)
    assert [name for name, _ in data.skipped] == ["no_crack/big.png"]
    assert "over the cap" in data.skipped[0][1]
