"""Recognise a labelled set's layout and list its (path, class, split) entries.

Layouts:
  folders   <class>/<image>                         (ImageFolder, e.g. Positive/ Negative/)
  split     train|val|test/<class>/<image>
  sdnet     D|P|W/{CD,UD,CP,UP,CW,UW}/<image>        (C* = crack, U* = no_crack)
  csv       a manifest path,label[,split]            (paths relative to the manifest)

A single wrapping folder (as zips often have) is looked through.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import PurePosixPath

from models.data.sources import FileSource, is_image_name

SPLITS = ("train", "val", "test")
SPLIT_ALIASES = {
    "train": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
}
SDNET_GROUPS = {"D", "P", "W"}
SDNET_CLASSES = {"CD", "UD", "CP", "UP", "CW", "UW"}


@dataclass(frozen=True)
class Entry:
    """One listed image: its name in the source, its class name and its split (or None)."""

    name: str
    label: str
    split: str | None


@dataclass(frozen=True)
class Listing:
    layout: str
    entries: list[Entry]


def _strip_wrapper(names: list[str]) -> tuple[str, list[str]]:
    """Drop a single top folder that wraps everything; return (prefix, relative names)."""
    prefix = ""
    rel = names
    while rel:
        tops = {PurePosixPath(n).parts[0] for n in rel}
        if len(tops) != 1 or any(len(PurePosixPath(n).parts) < 3 for n in rel):
            break
        top = tops.pop()
        if top in SDNET_GROUPS or top.lower() in SPLIT_ALIASES:
            break
        prefix += top + "/"
        rel = [n[len(top) + 1 :] for n in rel]
    return prefix, rel


def list_entries(source: FileSource) -> Listing:
    """Detect the layout and list the images; ValueError when nothing fits."""
    names = source.names()
    manifests = [n for n in names if n.lower().endswith(".csv")]
    if manifests:
        return _from_manifest(source, min(manifests, key=lambda n: (n.count("/"), n)))
    images = [n for n in names if is_image_name(n)]
    if not images:
        raise ValueError(
            f"{source.location} holds no images (looked for {', '.join(sorted({'.jpg', '.png', '.tif'}))} ...)"
        )
    prefix, rel = _strip_wrapper(images)
    parts = [PurePosixPath(n).parts for n in rel]
    tops = {p[0] for p in parts}
    if all(len(p) >= 3 for p in parts) and tops and all(t.lower() in SPLIT_ALIASES for t in tops):
        entries = [
            Entry(prefix + n, p[1], SPLIT_ALIASES[p[0].lower()])
            for n, p in zip(rel, parts, strict=True)
        ]
        return Listing("split", entries)
    if tops <= SDNET_GROUPS and all(len(p) >= 3 and p[1] in SDNET_CLASSES for p in parts):
        entries = [
            Entry(prefix + n, "crack" if p[1].startswith("C") else "no_crack", None)
            for n, p in zip(rel, parts, strict=True)
        ]
        return Listing("sdnet", entries)
    loose = [n for n, p in zip(rel, parts, strict=True) if len(p) < 2]
    if loose:
        raise ValueError(
            f"images must sit in one folder per class (e.g. crack/ and no_crack/); "
            f"found {len(loose)} at the top level, e.g. {loose[0]!r}"
        )
    entries = [Entry(prefix + n, p[0], None) for n, p in zip(rel, parts, strict=True)]
    return Listing("folders", entries)


def _from_manifest(source: FileSource, manifest: str) -> Listing:
    base = PurePosixPath(manifest).parent
    text = source.read(manifest).decode("utf-8-sig")
    reader = csv.DictReader(io.StringIO(text))
    fields = {f.strip().lower(): f for f in (reader.fieldnames or [])}
    if "path" not in fields or "label" not in fields:
        raise ValueError(
            f"manifest {manifest} needs a header with 'path' and 'label' columns, got {reader.fieldnames}"
        )
    entries = []
    for line, row in enumerate(reader, start=2):
        path = (row[fields["path"]] or "").strip()
        label = (row[fields["label"]] or "").strip()
        if not path or not label:
            raise ValueError(f"manifest {manifest} line {line}: empty path or label")
        split = None
        if "split" in fields and (row[fields["split"]] or "").strip():
            raw = row[fields["split"]].strip().lower()
            if raw not in SPLIT_ALIASES:
                raise ValueError(
                    f"manifest {manifest} line {line}: split must be one of {SPLITS}, got {raw!r}"
                )
            split = SPLIT_ALIASES[raw]
        name = (base / path).as_posix() if str(base) != "." else path
        entries.append(Entry(name, label, split))
    if not entries:
        raise ValueError(f"manifest {manifest} lists no images")
    return Listing("csv", entries)
