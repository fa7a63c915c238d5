"""Zips that are bombs or damaged (#27 items 10 and 11): refused as ValueError (a 422 at the
API) from the central directory or the first read, never a stray zipfile/zlib error."""

from __future__ import annotations

import io
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from models.data import load_labelled_set
from models.data.sources import ZipSource

NAMES = ["crack/a.png", "crack/b.png", "no_crack/c.png", "no_crack/d.png"]


def png(seed: int) -> bytes:
    buffer = io.BytesIO()
    pixels = np.random.default_rng(seed).integers(0, 255, (16, 16, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def tile_set_zip(method: int = zipfile.ZIP_STORED) -> bytearray:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=method) as archive:
        for seed, name in enumerate(NAMES):
            archive.writestr(name, png(seed))
    return bytearray(buffer.getvalue())


def member_data(raw: bytearray, name: str) -> tuple[int, int]:
    """(offset, length) of a member's compressed bytes in the archive."""
    info = zipfile.ZipFile(io.BytesIO(bytes(raw))).getinfo(name)
    start = info.header_offset
    name_len, extra_len = struct.unpack("<HH", raw[start + 26 : start + 30])
    return start + 30 + name_len + extra_len, info.compress_size


def patch_headers(raw: bytearray, name: str, local_at: int, central_at: int, value: int) -> None:
    """Write a 2-byte field of a member's local and central headers."""
    info = zipfile.ZipFile(io.BytesIO(bytes(raw))).getinfo(name)
    struct.pack_into("<H", raw, info.header_offset + local_at, value)
    central = raw.index(b"PK\x01\x02")
    while raw[central + 46 : central + 46 + len(name)] != name.encode():
        central = raw.index(b"PK\x01\x02", central + 4)
    struct.pack_into("<H", raw, central + central_at, value)


def bad_crc() -> bytearray:
    raw = tile_set_zip()
    offset, length = member_data(raw, "crack/b.png")
    raw[offset + length // 2] ^= 0xFF
    return raw


def bad_deflate() -> bytearray:
    raw = tile_set_zip(zipfile.ZIP_DEFLATED)
    offset, length = member_data(raw, "crack/b.png")
    raw[offset : offset + length] = b"\xff" * length
    return raw


def encrypted() -> bytearray:
    raw = tile_set_zip()
    patch_headers(raw, "crack/b.png", 6, 8, 0x1)
    return raw


def unknown_method() -> bytearray:
    raw = tile_set_zip()
    patch_headers(raw, "crack/b.png", 8, 10, 99)  # 99: WinZip AES, which zipfile lacks
    return raw


DAMAGED = {
    "bad CRC": (bad_crc, "cannot be read"),
    "bad deflate stream": (bad_deflate, "cannot be read"),
    "encrypted member": (encrypted, "encrypted"),
    "unknown compression method": (unknown_method, "compression method 99"),
}


@pytest.mark.parametrize("damage", DAMAGED)
def test_a_damaged_member_is_a_value_error_naming_it(tmp_path: Path, damage: str):
    make, words = DAMAGED[damage]
    path = tmp_path / "set.zip"
    path.write_bytes(bytes(make()))
    with pytest.raises(ValueError, match=words) as caught:
        load_labelled_set(path)
    assert "crack/b.png" in str(caught.value)


def test_an_undamaged_set_still_loads(tmp_path: Path):
    path = tmp_path / "set.zip"
    path.write_bytes(bytes(tile_set_zip(zipfile.ZIP_DEFLATED)))
    assert sorted(load_labelled_set(path).classes) == ["crack", "no_crack"]


def many_small_zeros(path: Path, members: int, member_bytes: int) -> None:
    zeros = bytes(member_bytes)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for i in range(members):
            archive.writestr(f"crack/{i}.png", zeros)


def test_many_small_members_cannot_inflate_past_the_ratio_in_all(tmp_path: Path):
    """2,000 members of 1 MiB of zeros (each exempt from the per-member ratio) make a
    ~2 MB zip that unpacks to 2 GiB."""
    path = tmp_path / "bomb.zip"
    many_small_zeros(path, 2000, 1 << 20)
    assert path.stat().st_size < 3 << 20
    with pytest.raises(ValueError, match="in all"):
        ZipSource(path)


def test_a_small_well_compressed_zip_is_not_a_bomb(tmp_path: Path):
    path = tmp_path / "small.zip"
    many_small_zeros(path, 40, 1 << 20)  # 40 MiB from ~40 KB: under the 64 MiB allowance
    assert len(ZipSource(path).names()) == 40
