"""Load a labelled set in any layout: read, skip corrupt images, drop duplicates, split 3:1:1."""

from __future__ import annotations

import hashlib
from pathlib import Path

from models.data.class_names import check_class_names
from models.data.layouts import SPLITS, Entry, list_entries
from models.data.mask_set import DEFAULT_MASK_TILE, SetTooLargeError, load_masks_set
from models.data.masks import is_masks_layout
from models.data.sets import (
    DEFECT_NAME_RULE,
    LabelledSet,
    Sample,
    is_defect_name,
    stratified_split,
)
from models.data.sources import FileSource, open_source
from models.imageio import ImageDecodeError, decode_rgb


def load_labelled_set(
    path: str | Path,
    defect_classes: list[str] | None = None,
    classes: list[str] | None = None,
    seed: int = 0,
    verify_images: bool = True,
    mask_tile: int = DEFAULT_MASK_TILE,
    partial: bool = False,
    max_pixels: int | None = None,
    max_tiles: int | None = None,
) -> LabelledSet:
    """Read a labelled set from a folder or a .zip in any supported layout.

    Args:
        path: folder or .zip.
        defect_classes: the class names that count as defects; by default DEFECT_NAME_RULE.
        classes: force this class order (fine-tuning keeps its checkpoint's classes);
            a set whose classes differ is an error.
        seed: the seed of the stratified 3:1:1 split when none is given.
        verify_images: decode every image once so corrupt ones are skipped and counted.
        mask_tile: the masks layout's tile side in photo pixels (stride: half of it).
        partial: defect_classes may name classes this set lacks; when it names none of
            its classes, the naming rule decides (one of several sets being merged).
        max_pixels: images (photos and masks) with more pixels are skipped, from their
            headers, before they are decoded.
        max_tiles: the most tiles the set may hold (images, or tiles cut from photos).

    Raises:
        ValueError: empty set, a single class, unknown defect classes, class mismatch.
    """
    source = open_source(path)
    if is_masks_layout(source.names()):
        return load_masks_set(source, mask_tile, seed, verify_images, max_pixels, max_tiles)
    listing = list_entries(source)
    if max_tiles is not None and len(listing.entries) > max_tiles:
        raise SetTooLargeError(
            f"{source.location} lists {len(listing.entries):,} tiles, over the cap of "
            f"{max_tiles:,} (CRACKSCAN_MAX_SET_TILES)"
        )
    found = sorted({e.label for e in listing.entries})
    check_class_names(found, source.location)
    if classes is not None:
        if sorted(classes) != found:
            raise ValueError(f"the set's classes {found} differ from the expected {list(classes)}")
        found = list(classes)
    entries, skipped, duplicates = _clean(source, listing.entries, verify_images, max_pixels)
    present = sorted({e.label for e in entries})
    if not entries:
        raise ValueError(f"{source.location} has no readable images ({len(skipped)} skipped)")
    if len(present) < 2:
        raise ValueError(
            f"{source.location} has a single class {present}: need at least two to train"
        )
    class_list = found if classes is not None else present
    if partial and defect_classes is not None:
        defect_classes = [c for c in defect_classes if c in class_list] or None
    defects = _defect_classes(class_list, defect_classes)
    index = {c: i for i, c in enumerate(class_list)}
    samples = [Sample(e.name, index[e.label]) for e in entries]
    splits, given = _split(samples, [e.split for e in entries], seed, source.location)
    return LabelledSet(
        source, listing.layout, class_list, defects, splits, skipped, duplicates, given
    )


def _split(
    samples: list[Sample], given_splits: list[str | None], seed: int, location: str
) -> tuple[dict[str, list[Sample]], bool]:
    """The splits the set's folders give, or a seeded stratified 3:1:1; and whether given."""
    if any(split is not None for split in given_splits):
        splits = {
            s: [x for x, g in zip(samples, given_splits, strict=True) if g == s] for s in SPLITS
        }
        if not splits["train"]:
            raise ValueError(f"{location} gives splits but its train split is empty")
        return splits, True
    parts = stratified_split([s.label for s in samples], seed)
    return {s: [samples[i] for i in parts[s]] for s in SPLITS}, False


def _clean(
    source: FileSource, entries: list[Entry], verify: bool, max_pixels: int | None = None
) -> tuple[list[Entry], list[tuple[str, str]], int]:
    """Drop unreadable images and exact duplicates (by sha256 of the bytes), first one kept.

    Entries with a given split are visited train, val, test, so a duplicate is
    dropped from the evaluation split rather than from training.
    """
    order = {None: 0, "train": 0, "val": 1, "test": 2}
    kept: list[Entry] = []
    skipped: list[tuple[str, str]] = []
    seen: set[str] = set()
    duplicates = 0
    for entry in sorted(entries, key=lambda e: (order[e.split], e.name)):
        try:
            data = source.read(entry.name)
        except (OSError, KeyError) as exc:
            skipped.append((entry.name, f"unreadable: {exc}"))
            continue
        digest = hashlib.sha256(data).hexdigest()
        if digest in seen:
            duplicates += 1
            continue
        if verify:
            try:
                decode_rgb(data, max_pixels=max_pixels)
            except ImageDecodeError as exc:
                skipped.append((entry.name, str(exc)))
                continue
        seen.add(digest)
        kept.append(entry)
    return kept, skipped, duplicates


def _defect_classes(classes: list[str], explicit: list[str] | None) -> list[str]:
    if explicit is not None:
        unknown = sorted(set(explicit) - set(classes))
        if unknown:
            raise ValueError(f"defect classes {unknown} are not among the classes {classes}")
        return [c for c in classes if c in explicit]
    defects = [c for c in classes if is_defect_name(c)]
    if not defects:
        raise ValueError(
            f"none of the classes {classes} is a defect by the naming rule ({DEFECT_NAME_RULE}); "
            "name them explicitly (--defect-classes)"
        )
    if len(defects) == len(classes):
        raise ValueError(
            f"every class {classes} is a defect by the naming rule; name them explicitly"
        )
    return defects
