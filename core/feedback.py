"""The stored tile labels as a labelled set: read from the database, written as a zip.

Shared by feedback jobs (the worker) and `crackscan labels export` (the CLI); the cutting
and the photo-level split are models.data.feedback's.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.blobs import read_bytes
from core.statuses import InspectionStatus
from core.tables import Inspection, TileLabel

if TYPE_CHECKING:  # models is imported lazily: the worker's parent never loads torch
    from PIL import Image

    from models.data.feedback import LabelledPhoto


def labelled_inspections(session: Session, since: datetime | None = None) -> list[str]:
    """Ids of the succeeded inspections with at least one label (given at or after `since`)."""
    query = (
        select(TileLabel.inspection_id)
        .join(Inspection, Inspection.id == TileLabel.inspection_id)
        .where(
            Inspection.status == InspectionStatus.SUCCEEDED,
            Inspection.tiles_blob_id.is_not(None),  # rows from before tile tables cannot be cut
        )
        .distinct()
    )
    if since is not None:
        query = query.where(TileLabel.created_at >= since)
    return sorted(session.scalars(query))


def label_classes(session: Session, since: datetime | None = None) -> set[str]:
    """The classes the stored labels use."""
    query = select(TileLabel.label).distinct()
    if since is not None:
        query = query.where(TileLabel.created_at >= since)
    return set(session.scalars(query))


def export_labels(
    session: Session, path: Path, seed: int, since: datetime | None = None, max_pixels: int = 0
) -> dict[str, object]:
    """Write every stored label (given at or after `since`) as a `split`-layout zip at `path`.

    Returns the summary: photos and tiles per split and class. Raises ValueError when the
    labels cover too few photos for a split by photo.
    """
    from models.data.feedback import photo_splits, write_feedback_set
    from models.inference.intake import DEFAULT_MAX_PIXELS

    ids = labelled_inspections(session, since)
    splits = photo_splits(ids, seed)
    summary = write_feedback_set(
        path, _photos(session, ids, since, max_pixels or DEFAULT_MAX_PIXELS), splits
    )
    return {"photos": summary.photos, "tiles": summary.tiles}


def _photos(
    session: Session, ids: list[str], since: datetime | None, max_pixels: int
) -> Iterator[tuple[LabelledPhoto, Image.Image]]:
    """(LabelledPhoto, decoded photo) of each inspection, one decoded at a time."""
    from models.data.feedback import LabelledPhoto
    from models.inference.intake import open_image
    from models.inference.tile_table import TileTable

    for inspection_id in ids:
        row = session.get(Inspection, inspection_id)
        if row is None or row.tiles_blob_id is None:
            raise LookupError(f"inspection {inspection_id} was deleted while its labels were read")
        query = select(TileLabel).where(TileLabel.inspection_id == inspection_id)
        if since is not None:
            query = query.where(TileLabel.created_at >= since)
        labels = [
            (t.row, t.col, t.label)
            for t in session.scalars(query.order_by(TileLabel.row, TileLabel.col))
        ]
        grid = TileTable.from_npz(read_bytes(session, row.tiles_blob_id)).grid
        image = open_image(read_bytes(session, row.image_blob_id), max_pixels)
        yield LabelledPhoto(inspection_id, grid, labels), image
