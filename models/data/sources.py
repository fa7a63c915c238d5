"""Where a labelled set's files come from: a folder or a .zip, read through one interface."""

from __future__ import annotations

import zipfile
from pathlib import Path, PurePosixPath
from typing import Protocol

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp"}


class FileSource(Protocol):
    """Relative POSIX paths of the files in a set, and their bytes."""

    location: str

    def names(self) -> list[str]: ...

    def read(self, name: str) -> bytes: ...


class FolderSource:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.location = str(root)

    def names(self) -> list[str]:
        return sorted(
            p.relative_to(self.root).as_posix()
            for p in self.root.rglob("*")
            if p.is_file() and not _hidden(p.relative_to(self.root).as_posix())
        )

    def read(self, name: str) -> bytes:
        return (self.root / name).read_bytes()


# Zip bombs: limits checked on the central directory, before anything is decompressed.
# (Reading a member never yields more than its declared size: zipfile stops there.)
ZIP_MAX_MEMBERS = 1_000_000
ZIP_MAX_MEMBER_BYTES = 256 << 20
ZIP_MAX_TOTAL_BYTES = 32 << 30
ZIP_MAX_RATIO = 250  # uncompressed / compressed, for members over 1 MiB
ZIP_RATIO_FROM_BYTES = 1 << 20


def check_zip_limits(infos: list[zipfile.ZipInfo], where: str) -> None:
    """ValueError when the members are too many, too big, or compressed suspiciously well."""
    if len(infos) > ZIP_MAX_MEMBERS:
        raise ValueError(f"{where} holds {len(infos):,} members, over {ZIP_MAX_MEMBERS:,}")
    total = 0
    for info in infos:
        if info.file_size > ZIP_MAX_MEMBER_BYTES:
            raise ValueError(
                f"{where}: {info.filename} unpacks to {info.file_size >> 20} MiB, "
                f"over {ZIP_MAX_MEMBER_BYTES >> 20} MiB per file"
            )
        ratio = info.file_size / max(1, info.compress_size)
        if info.file_size > ZIP_RATIO_FROM_BYTES and ratio > ZIP_MAX_RATIO:
            raise ValueError(
                f"{where}: {info.filename} is compressed {ratio:.0f}:1, over "
                f"{ZIP_MAX_RATIO}:1 (a zip bomb?)"
            )
        total += info.file_size
    if total > ZIP_MAX_TOTAL_BYTES:
        raise ValueError(
            f"{where} unpacks to {total >> 30} GiB, over {ZIP_MAX_TOTAL_BYTES >> 30} GiB"
        )


class ZipSource:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.location = str(path)
        try:
            self._zip = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as exc:
            raise ValueError(f"{path} is not a readable zip file: {exc}") from exc
        try:
            check_zip_limits(self._zip.infolist(), path.name)
        except ValueError:
            self._zip.close()
            raise

    def names(self) -> list[str]:
        return sorted(
            info.filename
            for info in self._zip.infolist()
            if not info.is_dir() and not _hidden(info.filename)
        )

    def read(self, name: str) -> bytes:
        return self._zip.read(name)

    def __getstate__(self) -> dict[str, object]:  # pickled (to another process): reopen
        return {"path": self.path}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__init__(Path(str(state["path"])))  # type: ignore[misc]


def _hidden(name: str) -> bool:
    """macOS resource forks, dot-files and __MACOSX folders are not data."""
    parts = PurePosixPath(name).parts
    return any(p.startswith(".") or p == "__MACOSX" for p in parts)


def open_source(path: str | Path) -> FileSource:
    """Open a folder or a .zip file; ValueError if it is neither."""
    p = Path(path)
    if p.is_dir():
        return FolderSource(p)
    if p.is_file() and zipfile.is_zipfile(p):
        return ZipSource(p)
    if not p.exists():
        raise FileNotFoundError(f"no such dataset: {p}")
    raise ValueError(f"{p} is neither a folder nor a .zip file")


def is_image_name(name: str) -> bool:
    return PurePosixPath(name).suffix.lower() in IMAGE_SUFFIXES
