"""Image intake: formats, bit depths, EXIF orientation, the pixel cap, and broken files."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from models.imageio import ImageDecodeError
from models.inference import ImageTooLargeError, probe, read_image


def encode(image: Image.Image, fmt: str, **kw) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kw)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "mode, fmt",
    [
        ("RGB", "JPEG"),
        ("L", "JPEG"),
        ("RGB", "PNG"),
        ("RGBA", "PNG"),
        ("L", "PNG"),
        ("I;16", "PNG"),
        ("RGB", "TIFF"),
        ("L", "TIFF"),
        ("I;16", "TIFF"),
        ("RGBA", "TIFF"),
    ],
)
def test_formats_and_modes_decode_to_rgb8(mode, fmt):
    rng = np.random.default_rng(0)
    if mode == "I;16":
        arr = np.full((20, 30), 40000, dtype=np.uint16)
        image = Image.fromarray(arr)
        assert image.mode.startswith("I;16")
    else:
        channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
        arr = rng.integers(0, 256, (20, 30, channels), dtype=np.uint8).squeeze()
        image = Image.fromarray(arr, mode=mode)
    out = read_image(encode(image, fmt))
    assert out.shape == (20, 30, 3) and out.dtype == np.uint8
    if mode == "I;16":  # 16-bit values are rescaled from their full range, not clipped
        assert int(out[0, 0, 0]) == round(40000 / 65535 * 255)


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (40, 20), (200, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    data = encode(image, "JPEG", exif=exif.tobytes())
    assert probe(data)[1:] == (40, 20)  # as stored
    assert read_image(data).shape == (40, 20, 3)  # as seen: 20 wide, 40 high


def test_pixel_cap_is_checked_before_decoding():
    data = encode(Image.new("RGB", (100, 100)), "PNG")
    with pytest.raises(ImageTooLargeError, match="over the cap"):
        read_image(data, max_pixels=9_999)
    assert read_image(data, max_pixels=10_000).shape == (100, 100, 3)


def test_truncated_corrupt_and_foreign_files_are_clear_errors():
    good = encode(
        Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)),
        "JPEG",
    )
    with pytest.raises(ImageDecodeError, match="truncated or corrupt"):
        read_image(good[: len(good) // 2])
    with pytest.raises(ImageDecodeError, match="not a readable image"):
        read_image(b"this is not an image")
    with pytest.raises(ImageDecodeError, match="unsupported image format GIF"):
        read_image(encode(Image.new("P", (4, 4)), "GIF"))


def test_the_pixel_cap_is_per_call_and_pil_keeps_its_own_guard():
    """#13 item 9: importing the intake no longer switches PIL's bomb guard off for the
    whole process; the intake checks its own cap from the header, per call, even above
    PIL's limit."""
    import struct
    import zlib

    from PIL import Image

    import models.inference  # noqa: F401

    assert Image.MAX_IMAGE_PIXELS is not None

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    def png_header(width: int, height: int) -> bytes:
        """A PNG's signature, IHDR and an empty IDAT: enough to read the size, no pixels."""
        ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
        return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"")

    huge = png_header(15_000, 14_000)  # 210 MP: over PIL's own 2 x 89 MP error
    with pytest.raises(Image.DecompressionBombError):
        Image.open(io.BytesIO(huge))
    assert probe(huge, max_pixels=250_000_000) == ("PNG", 15_000, 14_000)
    with pytest.raises(ImageTooLargeError, match="over the cap of 100 MP"):
        probe(huge, max_pixels=100_000_000)


def test_oriented_size_turns_a_quarter_for_orientations_5_to_8():
    from models.inference import oriented_size

    image = Image.new("RGB", (40, 20))
    for orientation, size in ((1, (40, 20)), (3, (40, 20)), (5, (20, 40)), (6, (20, 40))):
        exif = Image.Exif()
        exif[0x0112] = orientation
        data = encode(image, "JPEG", exif=exif.tobytes())
        assert oriented_size(data) == size == read_image(data).shape[1::-1]
