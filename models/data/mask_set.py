"""Load a masks-layout set (photos with pixel masks) as labelled tiles, split by photo."""

from __future__ import annotations

import hashlib
from collections import Counter

import numpy as np

from models.data.layouts import SPLITS
from models.data.masks import (
    MASK_CLASSES,
    Photo,
    label_tiles,
    list_photos,
    photo_size,
    read_mask,
    tiles_of,
)
from models.data.sets import LabelledSet, Sample, stratified_split
from models.data.sources import FileSource
from models.imageio import ImageDecodeError

DEFAULT_MASK_TILE = 64


class SetTooLargeError(ValueError):
    """The set cuts into more tiles than its cap."""


def load_masks_set(
    source: FileSource,
    tile: int = DEFAULT_MASK_TILE,
    seed: int = 0,
    verify: bool = True,
    max_pixels: int | None = None,
    max_tiles: int | None = None,
) -> LabelledSet:
    """Cut every paired photo into labelled tiles; split the photos, not the tiles.

    Without given splits, photos are split 3:1:1, seeded and stratified by whether
    a photo holds any crack tile, so crack-free photos reach every split too.

    max_pixels: photos and masks with more pixels are skipped, read from their headers.
    max_tiles: the most tiles the photos may cut into, in all (before labelling), checked
    from each photo's header before it is decoded.

    Raises:
        ValueError: bad tile size, no usable photo, no tile of one of the classes, or more
            than max_tiles tiles.
    """
    if int(tile) != tile or tile < 8:
        raise ValueError(f"mask tile must be a whole number of pixels >= 8, got {tile!r}")
    listing = list_photos(source.names())
    skipped = [(name, "no matching image or mask") for name in listing.unpaired]
    counts: Counter[str] = Counter()
    per_photo: list[tuple[Photo, list[Sample]]] = []
    seen: set[str] = set()
    duplicates = 0
    cut = 0  # tiles cut so far, before labelling
    for photo in listing.photos:
        try:
            tiles_left = None if max_tiles is None else max_tiles - cut
            read = _read_pair(source, photo, verify, seen, tile, max_pixels, max_tiles, tiles_left)
        except _Unusable as exc:
            skipped.append((photo.image, str(exc)))
            continue
        if read is None:
            duplicates += 1
            continue
        digest, mask, width, height = read
        seen.add(digest)
        cut += tiles_of(width, height, tile)
        tiles, photo_counts = label_tiles(mask, tile)
        counts.update(photo_counts)
        side = (min(tile, width), min(tile, height))
        per_photo.append((photo, [Sample(photo.image, lab, (x, y, *side)) for x, y, lab in tiles]))
    if not per_photo:
        raise ValueError(
            f"{source.location} has no usable photo with a mask ({len(skipped)} skipped)"
        )
    present = {s.label for _, samples in per_photo for s in samples}
    if present != {0, 1}:
        missing = [MASK_CLASSES[c] for c in (0, 1) if c not in present]
        raise ValueError(f"{source.location}: no tile is {missing[0]} at {tile} px tiles")
    splits, given = _split_photos(per_photo, seed)
    return LabelledSet(
        source,
        "masks",
        list(MASK_CLASSES),
        [MASK_CLASSES[0]],
        splits,
        skipped,
        duplicates,
        given,
        tile_px=int(tile),
        tile_counts={k: int(counts[k]) for k in ("crack", "no_crack", "left_out")},
    )


class _Unusable(Exception):
    """A photo left out of the set, with the reason."""


def _read_pair(
    source: FileSource,
    photo: Photo,
    verify: bool,
    seen: set[str],
    tile: int,
    max_pixels: int | None,
    max_tiles: int | None,
    tiles_left: int | None,
) -> tuple[str, np.ndarray, int, int] | None:
    """(sha256 of the photo, its (H, W) mask, width, height); None for a photo already seen.
    The photo's header is read first: over the pixel cap, or past the tiles left, nothing of
    it (or of its mask) is decoded.

    Raises:
        _Unusable: the photo or its mask cannot be read or is over the pixel cap, or their
            sizes differ.
        SetTooLargeError: its tiles would take the set past max_tiles.
    """
    try:
        data = source.read(photo.image)  # read once: hashed, then sized or decoded
    except (OSError, KeyError) as exc:  # a damaged zip member is the zip's error: not here
        raise _Unusable(f"unreadable photo: {exc}") from exc
    digest = hashlib.sha256(data).hexdigest()
    if digest in seen:
        return None
    try:
        width, height = photo_size(data, False, max_pixels)  # the header: nothing decoded yet
    except (OSError, ImageDecodeError) as exc:
        raise _Unusable(f"unreadable photo: {exc}") from exc
    if tiles_left is not None and tiles_of(width, height, tile) > tiles_left:
        raise SetTooLargeError(
            f"{photo.image} ({width}x{height}) takes the set past {max_tiles:,} tiles at "
            f"{tile}-px tiles (CRACKSCAN_MAX_SET_TILES): use a larger mask_tile or fewer photos"
        )
    try:
        mask = read_mask(source, photo.mask, max_pixels)
        if verify:
            photo_size(data, True, max_pixels)
    except (OSError, KeyError, ImageDecodeError) as exc:
        raise _Unusable(f"unreadable photo or mask: {exc}") from exc
    if (width, height) != (mask.shape[1], mask.shape[0]):
        raise _Unusable(
            f"photo is {width}x{height} but its mask is {mask.shape[1]}x{mask.shape[0]}"
        )
    return digest, mask, width, height


def _split_photos(
    per_photo: list[tuple[Photo, list[Sample]]], seed: int
) -> tuple[dict[str, list[Sample]], bool]:
    """Every tile of a photo goes to its photo's split: the given one, or a seeded 3:1:1."""
    given = any(photo.split is not None for photo, _ in per_photo)
    if given:
        names = {s: [i for i, (p, _) in enumerate(per_photo) if p.split == s] for s in SPLITS}
        if not names["train"]:
            raise ValueError("the set gives splits but no photo is in train/")
    else:
        has_crack = [int(any(t.label == 0 for t in tiles)) for _, tiles in per_photo]
        names = stratified_split(has_crack, seed)
    splits = {s: [t for i in names[s] for t in per_photo[i][1]] for s in SPLITS}
    return splits, given
