"""Load a labelled tile set: read, skip corrupt images, drop duplicates, split 3:1:1."""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch

from models.data.layouts import SPLITS, Entry, list_entries
from models.data.sources import FileSource, open_source
from models.imageio import ImageDecodeError, decode_rgb

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
    name: str  # path inside the source
    label: int


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
        }


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


def load_labelled_set(
    path: str | Path,
    defect_classes: list[str] | None = None,
    classes: list[str] | None = None,
    seed: int = 0,
    verify_images: bool = True,
) -> LabelledSet:
    """Read a labelled set from a folder or a .zip in any supported layout.

    Args:
        path: folder or .zip.
        defect_classes: the class names that count as defects; by default DEFECT_NAME_RULE.
        classes: force this class order (fine-tuning keeps its checkpoint's classes);
            a set whose classes differ is an error.
        seed: the seed of the stratified 3:1:1 split when none is given.
        verify_images: decode every image once so corrupt ones are skipped and counted.

    Raises:
        ValueError: empty set, a single class, unknown defect classes, class mismatch.
    """
    source = open_source(path)
    listing = list_entries(source)
    found = sorted({e.label for e in listing.entries})
    if classes is not None:
        if sorted(classes) != found:
            raise ValueError(f"the set's classes {found} differ from the expected {list(classes)}")
        found = list(classes)
    entries, skipped, duplicates = _clean(source, listing.entries, verify_images)
    present = sorted({e.label for e in entries})
    if not entries:
        raise ValueError(f"{source.location} has no readable images ({len(skipped)} skipped)")
    if len(present) < 2:
        raise ValueError(
            f"{source.location} has a single class {present}: need at least two to train"
        )
    class_list = found if classes is not None else present
    defects = _defect_classes(class_list, defect_classes)
    index = {c: i for i, c in enumerate(class_list)}
    samples = [Sample(e.name, index[e.label]) for e in entries]
    given = any(e.split is not None for e in entries)
    if given:
        splits = {
            s: [x for x, e in zip(samples, entries, strict=True) if e.split == s] for s in SPLITS
        }
        if not splits["train"]:
            raise ValueError(f"{source.location} gives splits but its train split is empty")
    else:
        parts = stratified_split([s.label for s in samples], seed)
        splits = {s: [samples[i] for i in parts[s]] for s in SPLITS}
    return LabelledSet(
        source, listing.layout, class_list, defects, splits, skipped, duplicates, given
    )


def _clean(
    source: FileSource, entries: list[Entry], verify: bool
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
                decode_rgb(data)
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


def class_counts(samples: list[Sample], classes: list[str]) -> Counter[str]:
    return Counter(classes[s.label] for s in samples)
