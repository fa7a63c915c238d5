"""Several labelled sets trained as one: classes reconciled, each set keeping its own split."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from models.data.labelled_set import load_labelled_set
from models.data.layouts import SPLITS
from models.data.mask_set import DEFAULT_MASK_TILE
from models.data.masks import MASK_CLASSES
from models.data.sets import LabelledSet, Sample
from models.data.sources import FileSource


class CompositeSource:
    """The files of several sources, named ``"<set index>:<name in that set>"``."""

    def __init__(self, sources: list[FileSource]) -> None:
        self.sources = sources
        self.location = " + ".join(s.location for s in sources)

    def names(self) -> list[str]:
        return [f"{i}:{n}" for i, s in enumerate(self.sources) for n in s.names()]

    def read(self, name: str) -> bytes:
        index, _, inner = name.partition(":")
        return self.sources[int(index)].read(inner)


def reconcile_classes(
    sets: list[tuple[str, list[str], list[str]]],
) -> tuple[list[str], list[str], list[dict[int, int]]]:
    """The merged classes, defect classes, and each set's label map into them.

    Sets with the same classes and defects keep them (the first set's order). Otherwise
    every set must be binary (one defect class, one other), and they merge through the
    defect rule into crack / no_crack.

    Args:
        sets: (name, classes, defect classes) of each set.

    Raises:
        ValueError: naming the sets whose classes cannot be merged.
    """
    _, first, first_defects = sets[0]
    same = all(
        sorted(classes) == sorted(first) and sorted(defects) == sorted(first_defects)
        for _, classes, defects in sets
    )
    if same:
        maps = [{i: first.index(c) for i, c in enumerate(classes)} for _, classes, _ in sets]
        return list(first), list(first_defects), maps
    odd = [(n, c, d) for n, c, d in sets if len(c) != 2 or len(d) != 1]
    if odd:
        described = "; ".join(f"{n}: classes {c}, defects {d}" for n, c, d in odd)
        raise ValueError(
            "these sets' classes cannot be merged with the others (only sets with the same "
            f"classes, or two-class crack / no-crack sets, can be): {described}"
        )
    maps = [
        {i: (0 if c in defects else 1) for i, c in enumerate(classes)}
        for _, classes, defects in sets
    ]
    return list(MASK_CLASSES), [MASK_CLASSES[0]], maps


def merge_sets(sets: list[LabelledSet]) -> LabelledSet:
    """One set of every set's samples; each set's train, val and test stay as they were."""
    if len(sets) == 1:
        return sets[0]
    classes, defects, maps = reconcile_classes(
        [(s.source.location, s.classes, s.defect_classes) for s in sets]
    )
    splits: dict[str, list[Sample]] = {s: [] for s in SPLITS}
    for index, (data, label_map) in enumerate(zip(sets, maps, strict=True)):
        for split in SPLITS:
            splits[split] += [
                Sample(f"{index}:{x.name}", label_map[x.label], x.box) for x in data.splits[split]
            ]
    tile_sizes = sorted({s.tile_px for s in sets if s.tile_px is not None})
    if len(tile_sizes) > 1:
        raise ValueError(f"masks sets must share one tile size, got {tile_sizes} px")
    merged = LabelledSet(
        CompositeSource([s.source for s in sets]),
        "+".join(s.layout for s in sets),
        classes,
        defects,
        splits,
        [(f"{i}:{n}", r) for i, s in enumerate(sets) for n, r in s.skipped],
        sum(s.duplicates_removed for s in sets),
        any(s.split_given for s in sets),
        tile_px=tile_sizes[0] if tile_sizes else None,
        tile_counts=dict(sum((Counter(s.tile_counts) for s in sets), Counter())),
        parts=[s.summary() for s in sets],
    )
    return merged


def load_labelled_sets(
    paths: list[str | Path],
    defect_classes: list[str] | None = None,
    classes: list[str] | None = None,
    seed: int = 0,
    verify_images: bool = True,
    mask_tile: int = DEFAULT_MASK_TILE,
) -> LabelledSet:
    """Load one or more sets (see load_labelled_set) and merge them.

    With several sets, explicit defect classes apply to each set that has them (the
    naming rule to the others), and `classes` is checked against the merged classes.
    """
    if not paths:
        raise ValueError("give at least one labelled set")
    if len(paths) == 1:
        return load_labelled_set(paths[0], defect_classes, classes, seed, verify_images, mask_tile)
    sets = [
        load_labelled_set(p, defect_classes, None, seed, verify_images, mask_tile, partial=True)
        for p in paths
    ]
    merged = merge_sets(sets)
    return merged if classes is None else merged.in_class_order(list(classes))
