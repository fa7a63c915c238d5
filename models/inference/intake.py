"""Image intake for inspections: header checks before decoding, EXIF orientation, 8-bit RGB."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from models.imageio import ImageDecodeError, to_rgb8

FORMATS = ("JPEG", "PNG", "TIFF", "MPO")
DEFAULT_MAX_PIXELS = 250_000_000


class ImageTooLargeError(ValueError):
    """The image has more pixels than the configured cap."""


def _open_header(data: bytes | Path) -> Image.Image:
    """Open (header only) with this module's formats, without PIL's process-wide pixel
    guard: the callers check their own cap from the header, per call, before decoding.
    PIL's Image.MAX_IMAGE_PIXELS stays in force for every other use of PIL.
    """
    fp = data.open("rb") if isinstance(data, Path) else io.BytesIO(data)
    prefix = fp.read(16)
    Image.init()
    for fmt in FORMATS:
        if fmt not in Image.OPEN:  # MPO is opened by the JPEG factory
            continue
        factory, accept = Image.OPEN[fmt]
        if accept is not None and not accept(prefix):
            continue
        fp.seek(0)
        try:
            image = factory(fp, "")
        except (SyntaxError, IndexError, TypeError, ValueError, OSError):
            continue
        image._exclusive_fp = True  # closing the image closes the file  # noqa: SLF001
        return image
    try:  # only to name the format in the message
        fp.seek(0)
        with Image.open(fp) as other:
            found = other.format
    except Exception:
        found = None
    finally:
        fp.close()
    if found:
        raise ImageDecodeError(f"unsupported image format {found}: use JPEG, PNG or TIFF")
    raise ImageDecodeError("not a readable image: not a JPEG, PNG or TIFF file")


def probe(data: bytes | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[str, int, int]:
    """Read only the header: (format, width, height) as stored; raises before any decoding.

    Raises:
        ImageDecodeError: not a JPEG, PNG or TIFF image.
        ImageTooLargeError: width x height exceeds max_pixels.
    """
    with _open_header(data) as image:
        fmt, (width, height) = image.format or "", image.size
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"image is {width}x{height} = {width * height / 1e6:.0f} MP, over the cap of {max_pixels / 1e6:.0f} MP"
        )
    return fmt, width, height


TRANSPOSING_ORIENTATIONS = {5, 6, 7, 8}  # EXIF orientations that turn the photo a quarter


def oriented_size(data: bytes | Path) -> tuple[int, int]:
    """(width, height) as people see the photo, from its header: its EXIF orientation
    applied, as open_image applies it (what the tiles, the map and photo.jpg measure)."""
    try:
        with _open_header(data) as image:
            width, height = image.size
            orientation = image.getexif().get(0x0112, 1)
    except ImageDecodeError:
        raise
    except Exception as exc:  # a damaged EXIF block
        raise ImageDecodeError(f"the image's header is damaged: {exc}") from exc
    return (height, width) if orientation in TRANSPOSING_ORIENTATIONS else (width, height)


def check_complete(data: bytes | Path) -> None:
    """Decode all the pixel data once, cheaply, so a truncated or corrupt file is refused
    before anything is stored. JPEG is decoded at 1/8 scale (libjpeg still reads every
    entropy-coded byte); PNG and TIFF in full, and PNG's chunk checksums are verified.
    Formats without checksums (JPEG data, raw TIFF strips) can hide flipped bytes: those
    decode as wrong pixels, which no reader can tell. Call probe() first: it bounds the size.

    Raises:
        ImageDecodeError: the file ends early or its data is corrupt.
    """
    try:
        with _open_header(data) as image:
            if image.format in ("JPEG", "MPO"):
                image.draft("RGB", (max(1, image.width // 8), max(1, image.height // 8)))
            image.load()
            checksummed = image.format == "PNG"
        if checksummed:  # every chunk's CRC, up to IEND (load() stops at the last pixel row)
            with _open_header(data) as image:
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
        image = _open_header(data)
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
