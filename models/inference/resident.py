"""Photos as (3, H, W) uint8 tensors on the inference device, so tiles are cut as views there.

On CUDA a JPEG is decoded by nvjpeg straight into device memory (torchvision.io.decode_jpeg);
PNG, TIFF and JPEGs that nvjpeg cannot read (CMYK, 12-bit) are decoded by Pillow, as on the
CPU path, and uploaded once. EXIF orientation is applied on the device with the same
transposes as PIL's ImageOps.exif_transpose, so both paths see the same oriented pixels and
tile positions.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from PIL import Image

from models.imageio import ImageDecodeError
from models.inference.intake import DEFAULT_MAX_PIXELS, _open_header, open_image, probe

ORIENTATION_TAG = 0x0112


def exif_orientation(data: bytes) -> int:
    """The EXIF orientation (1-8) from the header alone; 1 when absent or unreadable."""
    try:
        with _open_header(data) as image:
            return _orientation_of(image)
    except ImageDecodeError:
        return 1


def _orientation_of(image: Image.Image) -> int:
    try:
        value = int(image.getexif().get(ORIENTATION_TAG, 1))
    except Exception:  # a broken EXIF block: PIL's exif_transpose ignores it as well
        return 1
    return value if 1 <= value <= 8 else 1


def orient(image: torch.Tensor, orientation: int) -> torch.Tensor:
    """Apply EXIF orientation to a (3, H, W) tensor as PIL's exif_transpose does.

    1 none, 2 mirror left-right, 3 rotate 180, 4 mirror top-bottom, 5 transpose
    (x <-> y), 6 rotate 90 clockwise, 7 transverse, 8 rotate 90 counter-clockwise.
    Returns a view where one exists (flips and rotations are copies in torch).
    """
    h, w = 1, 2  # the spatial dims of (3, H, W)
    if orientation == 2:
        return image.flip(w)
    if orientation == 3:
        return image.flip(h, w)
    if orientation == 4:
        return image.flip(h)
    if orientation == 5:
        return image.transpose(h, w)
    if orientation == 6:
        return torch.rot90(image, -1, (h, w))
    if orientation == 7:
        return image.transpose(h, w).flip(h, w)
    if orientation == 8:
        return torch.rot90(image, 1, (h, w))
    return image


def _nvjpeg_orientation(data: bytes) -> int | None:
    """The EXIF orientation of a JPEG that nvjpeg can decode (8-bit, YCbCr or greyscale: not
    CMYK, not 12-bit); None for anything else. One read of the header."""
    try:
        with _open_header(data) as image:
            if image.format != "JPEG" or image.mode not in ("RGB", "L"):
                return None
            return _orientation_of(image)
    except ImageDecodeError:
        return None


def decode_to_device(
    data: bytes, device: torch.device, max_pixels: int = DEFAULT_MAX_PIXELS
) -> torch.Tensor:
    """An image file's bytes as an oriented (3, H, W) uint8 tensor on `device`.

    Raises ImageTooLargeError over the pixel cap (from the header, before decoding) and
    ImageDecodeError for a truncated or corrupt file, as open_image does.
    """
    orientation = None
    if device.type == "cuda":
        probe(data, max_pixels)  # open_image checks the cap itself on the other path
        orientation = _nvjpeg_orientation(data)
    if orientation is not None:
        from torchvision.io import ImageReadMode, decode_jpeg

        try:
            encoded = torch.frombuffer(bytearray(data), dtype=torch.uint8)
            decoded = decode_jpeg(encoded, mode=ImageReadMode.RGB, device=device)
        except RuntimeError as exc:
            raise ImageDecodeError(f"the image is truncated or corrupt: {exc}") from exc
        return orient(decoded, orientation).contiguous()
    return to_device(np.asarray(open_image(data, max_pixels), dtype=np.uint8), device)


def to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """An (H, W, 3) uint8 array as a (3, H, W) tensor on `device` (one upload on CUDA)."""
    with warnings.catch_warnings():  # a read-only array is fine: tiles are only read
        warnings.simplefilter("ignore", UserWarning)
        image = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1)
    if device.type == "cpu":
        return image  # a view of the array: no copy
    return image.pin_memory().to(device, non_blocking=True).contiguous()


def host_preview(image: torch.Tensor, max_side: int) -> np.ndarray:
    """An (h, w, 3) uint8 host copy scaled to at most `max_side` (antialiased), for overlays:
    a 42 MP photo comes back from the device as 1.6 MP."""
    _, height, width = image.shape
    scale = min(1.0, max_side / max(height, width))
    if scale < 1.0:
        size = (max(1, round(height * scale)), max(1, round(width * scale)))
        image = torch.nn.functional.interpolate(
            image[None].float(), size=size, mode="bilinear", antialias=True, align_corners=False
        )[0]
        image = image.round_().clamp_(0, 255).to(torch.uint8)
    return image.permute(1, 2, 0).contiguous().cpu().numpy()
