"""Image intake for inspections: header checks before decoding, EXIF orientation, 8-bit RGB."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from models.imageio import ImageDecodeError, to_rgb8

# We check the pixel count ourselves, from the header, before decoding.
Image.MAX_IMAGE_PIXELS = None

FORMATS = ("JPEG", "PNG", "TIFF", "MPO")
DEFAULT_MAX_PIXELS = 250_000_000


class ImageTooLargeError(ValueError):
    """The image has more pixels than the configured cap."""


def probe(data: bytes | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[str, int, int]:
    """Read only the header: (format, width, height) as stored; raises before any decoding.

    Raises:
        ImageDecodeError: not a JPEG, PNG or TIFF image.
        ImageTooLargeError: width x height exceeds max_pixels.
    """
    try:
        with Image.open(data if isinstance(data, Path) else io.BytesIO(data)) as image:
            fmt, (width, height) = image.format or "", image.size
    except Exception as exc:
        raise ImageDecodeError(f"not a readable image: {exc}") from exc
    if fmt not in FORMATS:
        raise ImageDecodeError(
            f"unsupported image format {fmt or 'unknown'}: use JPEG, PNG or TIFF"
        )
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"image is {width}x{height} = {width * height / 1e6:.0f} MP, over the cap of {max_pixels / 1e6:.0f} MP"
        )
    return fmt, width, height


def check_complete(data: bytes | Path) -> None:
    """Decode all the pixel data once, cheaply, so a truncated or corrupt file is refused
    before anything is stored. JPEG is decoded at 1/8 scale (libjpeg still reads every
    entropy-coded byte); PNG and TIFF in full, and PNG's chunk checksums are verified.
    Formats without checksums (JPEG data, raw TIFF strips) can hide flipped bytes: those
    decode as wrong pixels, which no reader can tell. Call probe() first: it bounds the size.

    Raises:
        ImageDecodeError: the file ends early or its data is corrupt.
    """

    def opened() -> Image.Image:
        return Image.open(data if isinstance(data, Path) else io.BytesIO(data))

    try:
        with opened() as image:
            if image.format in ("JPEG", "MPO"):
                image.draft("RGB", (max(1, image.width // 8), max(1, image.height // 8)))
            image.load()
            checksummed = image.format == "PNG"
        if checksummed:  # every chunk's CRC, up to IEND (load() stops at the last pixel row)
            with opened() as image:
                image.verify()
    except Exception as exc:
        raise ImageDecodeError(f"the image is truncated or corrupt: {exc}") from exc


def open_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode to an 8-bit RGB PIL image as people see it (EXIF orientation applied).

    Handles 8- and 16-bit, greyscale, RGB and RGBA. Only one full-size copy of the
    pixels is kept: orientation is applied in place and RGB input is not converted.
    Truncated or corrupt files raise ImageDecodeError; too many pixels raise
    ImageTooLargeError before decoding.
    """
    probe(data, max_pixels)
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
        if image.getexif().get(0x0112, 1) != 1:
            ImageOps.exif_transpose(image, in_place=True)
        return to_rgb8(image)
    except ImageDecodeError:
        raise
    except Exception as exc:
        raise ImageDecodeError(f"the image is truncated or corrupt: {exc}") from exc


def read_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode to an (H, W, 3) uint8 array (see open_image)."""
    return np.asarray(open_image(data, max_pixels), dtype=np.uint8)
