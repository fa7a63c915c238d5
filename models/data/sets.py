"""Labelled tiles and their splits: the types every layout loads into."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

import torch

from models.data.layouts import SPLITS
from models.data.masks import MASK_TILE_RULE
from models.data.sources import FileSource

# The stated naming rule for defect classes, used when none are given explicitly.
DEFECT_NAME_RULE = (
    "a class is a defect when its lower-cased name is 'positive', 'defect' or 'defective', "
    "or contains 'crack' without starting with 'no', 'non' or 'un'"
)


def is_defect_name(name: str) -> bool:
    """Apply DEFECT_NAME_RULE to one class name."""
    low = re.sub(r"[^a-z]", "", name.lower())
    if low in ("positive", "defect", "defective"):
        return True
    return "crack" in low and not low.startswith(("no", "non", "un"))


@dataclass(frozen=True)
class Sample:
    """One labelled tile: a whole image, or a box (x, y, w, h) cut from a photo."""

    name: str  # path inside the source
    label: int
    box: tuple[int, int, int, int] | None = None


@dataclass
class LabelledSet:
    """A labelled tile set, split into train / val / test."""

    source: FileSource
    layout: str
    classes: list[str]
    defect_classes: list[str]
    splits: dict[str, list[Sample]]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (name, reason)
    duplicates_removed: int = 0
    split_given: bool = False
    tile_px: int | None = None  # masks layout: the tile side in photo pixels
    tile_counts: dict[str, int] = field(default_factory=dict)  # masks layout: per rule outcome
    parts: list[dict[str, object]] = field(default_factory=list)  # merged sets: each one's summary

    def counts(self) -> dict[str, dict[str, int]]:
        """Images per class in each split."""
        return {
            split: {c: sum(1 for s in samples if s.label == i) for i, c in enumerate(self.classes)}
            for split, samples in self.splits.items()
        }

    def summary(self) -> dict[str, object]:
        return {
            "source": self.source.location,
            "layout": self.layout,
            "classes": self.classes,
            "defect_classes": self.defect_classes,
            "counts": self.counts(),
            "skipped": len(self.skipped),
            "skipped_examples": [f"{n}: {r}" for n, r in self.skipped[:10]],
            "duplicates_removed": self.duplicates_removed,
            "split_given": self.split_given,
            **(
                {
                    "tile_px": self.tile_px,
                    "tile_rule": MASK_TILE_RULE,
                    "tiles": dict(self.tile_counts),
                    "photos": self.photo_counts(),
                }
                if self.tile_px is not None
                else {}
            ),
            **({"sets": self.parts} if self.parts else {}),
        }

    def in_class_order(self, classes: list[str]) -> LabelledSet:
        """The same set with its classes in the given order (a fine-tuned model's)."""
        if sorted(classes) != sorted(self.classes):
            raise ValueError(f"the set's classes {self.classes} differ from the expected {classes}")
        if list(classes) == self.classes:
            return self
        new = [classes.index(c) for c in self.classes]
        splits = {
            split: [Sample(x.name, new[x.label], x.box) for x in samples]
            for split, samples in self.splits.items()
        }
        return replace(self, classes=list(classes), splits=splits)

    def photo_counts(self) -> dict[str, int]:
        """Distinct photos in each split (a masks set's split is by photo)."""
        return {split: len({s.name for s in samples}) for split, samples in self.splits.items()}


def stratified_split(
    labels: list[int], seed: int, ratios: tuple[int, int, int] = (3, 1, 1)
) -> dict[str, list[int]]:
    """Deterministic, seeded, stratified split of indices into train / val / test.

    Each class is shuffled with torch.Generator(seed + class index) and cut by the ratios.
    """
    out: dict[str, list[int]] = {s: [] for s in SPLITS}
    total = sum(ratios)
    for c in sorted(set(labels)):
        idx = [i for i, y in enumerate(labels) if y == c]
        order = torch.randperm(len(idx), generator=torch.Generator().manual_seed(seed + c)).tolist()
        shuffled = [idx[i] for i in order]
        n = len(shuffled)
        n_val = round(n * ratios[1] / total)
        n_test = round(n * ratios[2] / total)
        if n >= 3:  # every split gets at least one tile of every class
            n_val, n_test = max(1, n_val), max(1, n_test)
        n_train = n - n_val - n_test
        out["train"] += shuffled[:n_train]
        out["val"] += shuffled[n_train : n_train + n_val]
        out["test"] += shuffled[n_train + n_val :]
    return {s: sorted(v) for s, v in out.items()}
