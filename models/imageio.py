"""Decoding images into 8-bit RGB, whatever their mode and bit depth."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFile, ImageOps

# Decoding a truncated file must fail loudly, never return a half-grey picture.
ImageFile.LOAD_TRUNCATED_IMAGES = False


class ImageDecodeError(ValueError):
    """The bytes are not a readable image."""


def to_rgb8(image: Image.Image) -> Image.Image:
    """Convert any PIL mode (1, L, LA, P, RGBA, I;16, I, F, CMYK...) to 8-bit RGB.

    16-bit and 32-bit greyscale are rescaled from their full range, not clipped;
    alpha is dropped (composited on black would invent pixels; we keep the colour).
    """
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        if image.mode == "F":
            top = max(float(arr.max(initial=1.0)), 1e-12)
        grey = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if image.mode in ("RGBA", "LA", "PA"):
        return image.convert("RGBA").convert("RGB")
    if image.mode == "P":
        return image.convert("RGBA").convert("RGB")
    return image.convert("RGB")


def check_pixels(image: Image.Image, max_pixels: int | None) -> None:
    """ImageDecodeError when an opened (not yet decoded) image has more pixels than the cap."""
    width, height = image.size
    if max_pixels is not None and width * height > max_pixels:
        raise ImageDecodeError(
            f"the image is {width}x{height} = {width * height / 1e6:.1f} MP, over the cap of "
            f"{max_pixels / 1e6:.1f} MP (CRACKSCAN_MAX_IMAGE_PIXELS)"
        )


def decode_rgb(data: bytes, apply_exif: bool = True, max_pixels: int | None = None) -> Image.Image:
    """Decode bytes fully into an 8-bit RGB image (EXIF orientation applied); with
    max_pixels, an image over it is refused from its header, before it is decoded.

    Raises:
        ImageDecodeError: the bytes are not an image, are truncated or corrupt, or the
            image has more than max_pixels pixels.
    """
    try:
        with Image.open(io.BytesIO(data)) as opened:
            check_pixels(opened, max_pixels)
            opened.load()
            image = ImageOps.exif_transpose(opened) if apply_exif else opened.copy()
    except ImageDecodeError:
        raise
    except Exception as exc:  # PIL raises many types for bad data
        raise ImageDecodeError(f"not a readable image: {exc}") from exc
    assert image is not None
    return to_rgb8(image)
