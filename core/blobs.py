"""Files stored in the database as chunked blobs, streamed in and out, with their sha256.

A worker on another machine needs nothing but the database URL to read them.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from core.tables import Blob, BlobChunk


def store_stream(
    session: Session,
    stream: BinaryIO,
    chunk_bytes: int,
    content_type: str = "application/octet-stream",
) -> Blob:
    """Copy a stream into a new blob, one chunk in memory at a time.

    It is written inside the caller's transaction: a rollback leaves nothing behind.
    Size limits are the caller's: uploads are capped while they are spooled.
    """
    blob = Blob(sha256="", size=0, content_type=content_type, complete=False)
    session.add(blob)
    session.flush()
    digest = hashlib.sha256()
    size = 0
    seq = 0
    while chunk := stream.read(chunk_bytes):
        size += len(chunk)
        digest.update(chunk)
        part = BlobChunk(blob_id=blob.id, seq=seq, data=chunk)
        session.add(part)
        session.flush()
        session.expunge(part)  # keep only one chunk in memory
        seq += 1
    blob.sha256, blob.size, blob.complete = digest.hexdigest(), size, True
    session.flush()
    return blob


def store_bytes(
    session: Session, data: bytes, chunk_bytes: int, content_type: str = "application/octet-stream"
) -> Blob:
    import io

    return store_stream(session, io.BytesIO(data), chunk_bytes, content_type)


def store_file(
    session: Session, path: Path, chunk_bytes: int, content_type: str = "application/octet-stream"
) -> Blob:
    with path.open("rb") as handle:
        return store_stream(session, handle, chunk_bytes, content_type)


def iter_chunks(session: Session, blob_id: str) -> Iterator[bytes]:
    """The blob's bytes, one chunk at a time."""
    seqs = session.scalars(
        select(BlobChunk.seq).where(BlobChunk.blob_id == blob_id).order_by(BlobChunk.seq)
    ).all()
    for seq in seqs:
        data = session.scalar(
            select(BlobChunk.data).where(BlobChunk.blob_id == blob_id, BlobChunk.seq == seq)
        )
        yield bytes(data or b"")


def read_bytes(session: Session, blob_id: str) -> bytes:
    return b"".join(iter_chunks(session, blob_id))


def write_to_file(session: Session, blob_id: str, path: Path) -> str:
    """Stream a blob into a file and check its sha256; returns the digest."""
    blob = session.get(Blob, blob_id)
    if blob is None or not blob.complete:
        raise FileNotFoundError(f"blob {blob_id} is missing or incomplete")
    digest = hashlib.sha256()
    tmp = path.with_name(path.name + ".part")
    with tmp.open("wb") as handle:
        for chunk in iter_chunks(session, blob_id):
            digest.update(chunk)
            handle.write(chunk)
    if digest.hexdigest() != blob.sha256:
        tmp.unlink(missing_ok=True)
        raise OSError(f"blob {blob_id} is damaged: sha256 mismatch")
    shutil.move(tmp, path)
    return blob.sha256


def delete_blob(session: Session, blob_id: str | None) -> None:
    if blob_id is None:
        return
    session.execute(delete(BlobChunk).where(BlobChunk.blob_id == blob_id))
    session.execute(delete(Blob).where(Blob.id == blob_id))
