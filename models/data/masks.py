"""The masks layout: photos with pixel masks, cut into labelled tiles.

A set is in this layout when it holds an ``image/`` or ``images/`` folder beside a
``mask/`` or ``masks/`` folder (at the top, under a wrapping folder, or under
``train/``, ``val/`` and ``test/``). A mask pairs with the photo of the same file
stem, optionally followed by ``_mask``, ``_gt`` or ``_label``, and may be PNG, JPEG or
BMP; a mask pixel above 127 is crack.

Each photo is cut into tiles of ``tile`` px at stride tile/2 (the last row and
column shifted inside the photo), and each tile is labelled by one rule
(:data:`MASK_TILE_RULE`): crack when it holds at least as many crack pixels as its
side is long, no crack when it holds none, left out in between.
"""

from __future__ import annotations

import io
from collections import Counter
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import numpy as np
from PIL import Image

from models.data.sources import FileSource, is_image_name
from models.imageio import ImageDecodeError, check_pixels, decode_rgb

IMAGE_DIRS = {"image", "images"}
MASK_DIRS = {"mask", "masks"}
MASK_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp"}
MASK_STEM_TAILS = ("", "_mask", "_gt", "_label")
SPLIT_DIRS = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
MASK_CLASSES = ["crack", "no_crack"]
MASK_TILE_RULE = (
    "a tile is crack when it holds at least as many crack pixels (mask > 127) as its side is "
    "long, no crack when it holds none, and is left out in between"
)


@dataclass(frozen=True)
class Photo:
    """One photo and its mask, by their names in the source, and the given split or None."""

    image: str
    mask: str
    split: str | None


@dataclass
class MaskListing:
    photos: list[Photo]
    unpaired: list[str] = field(default_factory=list)


def _parent_key(name: str) -> tuple[str, str, str] | None:
    """(prefix before the image/mask folder, folder kind, split) or None if not in one."""
    parts = PurePosixPath(name).parts
    if len(parts) < 2:
        return None
    folder = parts[-2].lower()
    kind = "image" if folder in IMAGE_DIRS else "mask" if folder in MASK_DIRS else None
    if kind is None:
        return None
    prefix = "/".join(parts[:-2])
    split = SPLIT_DIRS.get(parts[-3].lower(), "") if len(parts) >= 3 else ""
    return prefix, kind, split


def is_masks_layout(names: list[str]) -> bool:
    """True when some folder holds an image folder beside a mask folder."""
    kinds: dict[str, set[str]] = {}
    for name in names:
        key = _parent_key(name)
        if key is not None:
            kinds.setdefault(key[0], set()).add(key[1])
    return any(v == {"image", "mask"} for v in kinds.values())


def list_photos(names: list[str]) -> MaskListing:
    """Pair every photo with its mask by file stem; unpaired files are listed, not fatal."""
    images: dict[tuple[str, str], str] = {}
    masks: dict[tuple[str, str], list[str]] = {}
    splits: dict[str, str] = {}
    for name in names:
        key = _parent_key(name)
        if key is None:
            continue
        prefix, kind, split = key
        stem = PurePosixPath(name).stem
        if kind == "image" and is_image_name(name):
            images[(prefix, stem)] = name
            splits[prefix] = split
        elif kind == "mask" and PurePosixPath(name).suffix.lower() in MASK_SUFFIXES:
            masks.setdefault((prefix, stem), []).append(name)
    photos: list[Photo] = []
    used: set[str] = set()
    unpaired: list[str] = []
    for (prefix, stem), image in sorted(images.items()):
        mask = next(
            (
                sorted(masks[(prefix, stem + tail)])[0]
                for tail in MASK_STEM_TAILS
                if (prefix, stem + tail) in masks
            ),
            None,
        )
        if mask is None:
            unpaired.append(image)
            continue
        used.add(mask)
        photos.append(Photo(image, mask, splits[prefix] or None))
    unpaired += sorted(m for group in masks.values() for m in group if m not in used)
    return MaskListing(photos, unpaired)


def tile_origins(length: int, tile: int, stride: int) -> list[int]:
    """Tile starts along one axis: every stride, the last one shifted to end at the edge."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile + 1, stride))
    if starts[-1] != length - tile:
        starts.append(length - tile)
    return starts


def label_tiles(mask: np.ndarray, tile: int) -> tuple[list[tuple[int, int, int]], Counter[str]]:
    """Cut a (H, W) boolean crack mask at stride tile/2 and label by MASK_TILE_RULE.

    Returns:
        [(x, y, label index in MASK_CLASSES)] for the kept tiles, and the counts of
        "crack", "no_crack" and "left_out".
    """
    height, width = mask.shape
    stride = max(1, tile // 2)
    origins = [
        (x, y)
        for y in tile_origins(height, tile, stride)
        for x in tile_origins(width, tile, stride)
    ]
    boxes = [(x, y, tile, tile) for x, y in origins]  # cut short by a photo under a tile
    kept: list[tuple[int, int, int]] = []
    counts: Counter[str] = Counter()
    for (x, y), label in zip(origins, box_labels(mask, boxes), strict=True):
        counts[label] += 1
        if label != "left_out":
            kept.append((x, y, MASK_CLASSES.index(label)))
    return kept, counts


def box_labels(mask: np.ndarray, boxes: list[tuple[int, int, int, int]]) -> list[str]:
    """Label given tiles of a photo by MASK_TILE_RULE: how a map's tiles are scored.

    Args:
        mask: (H, W) bool crack mask.
        boxes: [(x, y, w, h)] in the mask's pixels (clipped to it); the rule's side is
            min(w, h).

    Returns:
        "crack", "no_crack" or "left_out" per box.
    """
    # int32 holds any count under the pixel cap (2**31 > 250 MP) at half int64's memory
    table = np.zeros((mask.shape[0] + 1, mask.shape[1] + 1), dtype=np.int32)
    table[1:, 1:] = mask.cumsum(0, dtype=np.int32).cumsum(1, dtype=np.int32)
    out = []
    for x, y, w, h in boxes:
        x1, y1 = min(mask.shape[1], x + w), min(mask.shape[0], y + h)
        n = table[y1, x1] - table[y, x1] - table[y1, x] + table[y, x]
        out.append("crack" if n >= min(w, h) else "no_crack" if n == 0 else "left_out")
    return out


def read_mask(source: FileSource, name: str, max_pixels: int | None = None) -> np.ndarray:
    """A mask as a (H, W) bool array, True where a pixel is above 127; decoded to one byte
    per pixel, and refused from its header when it has more than max_pixels."""
    data = source.read(name)  # a damaged zip member is the zip's error, not the mask's
    try:
        with Image.open(io.BytesIO(data)) as opened:
            check_pixels(opened, max_pixels)
            grey = opened.convert("L") if opened.mode != "L" else opened.copy()
    except ImageDecodeError:
        raise
    except Exception as exc:  # PIL raises many types for bad data
        raise ImageDecodeError(f"not a readable image: {exc}") from exc
    return np.asarray(grey, dtype=np.uint8) > 127


def photo_size(data: bytes, verify: bool, max_pixels: int | None = None) -> tuple[int, int]:
    """(width, height) of a photo's bytes, as stored (no EXIF rotation: masks are drawn on
    it), from its header; with verify the whole photo is decoded too, unless it is over
    max_pixels (refused from the header)."""
    try:
        with Image.open(io.BytesIO(data)) as opened:
            check_pixels(opened, max_pixels)
            size = opened.size
    except ImageDecodeError:
        raise
    except Exception as exc:  # PIL raises many types for bad data
        raise ImageDecodeError(f"not a readable image: {exc}") from exc
    if verify:
        decode_rgb(data, apply_exif=False, max_pixels=max_pixels)
    return size


def tiles_of(width: int, height: int, tile: int) -> int:
    """How many tiles label_tiles cuts from a width x height photo (before labelling)."""
    stride = max(1, tile // 2)
    return len(tile_origins(height, tile, stride)) * len(tile_origins(width, tile, stride))
