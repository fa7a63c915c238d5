"""Uploads: streamed to a temporary file with a size cap, never held whole in memory."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import UploadFile

from core.errors import PayloadTooLarge

CHUNK = 1 << 20


async def spool_upload(
    upload: UploadFile, folder: Path, max_bytes: int, name: str = "upload"
) -> Path:
    """Copy an upload into folder/name chunk by chunk; 413 past max_bytes."""
    path = folder / name
    size = 0
    with path.open("wb") as out:
        while chunk := await upload.read(CHUNK):
            size += len(chunk)
            if size > max_bytes:
                raise PayloadTooLarge(
                    f"the upload is larger than {max_bytes >> 20} MiB", field=upload.filename
                )
            out.write(chunk)
    return path


@asynccontextmanager
async def spooled(upload: UploadFile, max_bytes: int, name: str) -> AsyncIterator[Path]:
    """The upload as a temporary file, removed when the block ends, whatever happens."""
    folder = Path(tempfile.mkdtemp(prefix="crackscan-upload-"))
    try:
        yield await spool_upload(upload, folder, max_bytes, name)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
