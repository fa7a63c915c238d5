"""Where a labelled set's files come from: a folder or a .zip, read through one interface."""

from __future__ import annotations

import lzma
import zipfile
import zlib
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
ZIP_MAX_RATIO = 250  # uncompressed / compressed: for members over 1 MiB, and for the archive
ZIP_RATIO_FROM_BYTES = 1 << 20
ZIP_TOTAL_RATIO_FROM_BYTES = 64 << 20  # an archive may always unpack to this much
ZIP_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}


class DamagedZipError(ValueError):
    """A member of the zip cannot be read: encrypted, an unknown method, or corrupt data."""


def check_zip_limits(infos: list[zipfile.ZipInfo], where: str, archive_bytes: int) -> None:
    """ValueError when the members are too many, too big, compressed suspiciously well (each
    one over 1 MiB, and all of them together against the archive's size), encrypted, or
    compressed by a method this reader lacks."""
    if len(infos) > ZIP_MAX_MEMBERS:
        raise ValueError(f"{where} holds {len(infos):,} members, over {ZIP_MAX_MEMBERS:,}")
    total = 0
    for info in infos:
        if info.flag_bits & 0x1:
            raise DamagedZipError(
                f"{where}: {info.filename} is encrypted: zip the set without a password"
            )
        if info.compress_type not in ZIP_METHODS:
            raise DamagedZipError(
                f"{where}: {info.filename} uses compression method {info.compress_type}, "
                "which this reader lacks: use deflate or store"
            )
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
    if total > max(ZIP_TOTAL_RATIO_FROM_BYTES, ZIP_MAX_RATIO * archive_bytes):
        raise ValueError(
            f"{where} unpacks to {total >> 20:,} MiB from {archive_bytes / 2**20:.1f} MiB, "
            f"over {ZIP_MAX_RATIO}:1 in all (a zip bomb of many small members?)"
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
            check_zip_limits(self._zip.infolist(), path.name, path.stat().st_size)
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
        """The member's bytes; DamagedZipError when its data is corrupt (a bad CRC or
        compressed stream), encrypted or compressed by an unknown method."""
        try:
            return self._zip.read(name)
        except KeyError:
            raise
        except (zipfile.BadZipFile, zlib.error, EOFError, RuntimeError, NotImplementedError) as exc:
            raise DamagedZipError(f"{self.path.name}: {name} cannot be read: {exc}") from exc
        except (lzma.LZMAError, OSError) as exc:  # bz2 raises OSError for a bad stream
            raise DamagedZipError(f"{self.path.name}: {name} cannot be read: {exc}") from exc

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
