"""Decoded inspection photos and their tile grids for tile crops, in a small LRU bounded in pixels.

A reviewer asks for the crops of one map in a row; decoding a 42 MP JPEG (and reading the
map's tile table for its grid) once per crop would take a second each, so the last photos
decoded are kept with their grids, up to `max_pixels` in all.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

from PIL import Image
from sqlalchemy.orm import Session

from app.services.inspections import read_tile_table
from core.blobs import read_bytes
from core.errors import Conflict
from core.tables import Inspection
from models.inference import TileGrid, TileTable, open_image

MapPhoto = tuple[Image.Image, TileGrid]


class PhotoCache:
    def __init__(self, max_pixels: int) -> None:
        self.max_pixels = max_pixels
        self._photos: OrderedDict[str, MapPhoto] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str, decode: Callable[[], MapPhoto]) -> MapPhoto:
        """The photo and grid for `key`, read by `decode()` when not held (blocking)."""
        with self._lock:
            if key in self._photos:
                self._photos.move_to_end(key)
                return self._photos[key]
        photo = decode()
        with self._lock:
            self._photos[key] = photo
            self._photos.move_to_end(key)
            while len(self._photos) > 1 and self._pixels() > self.max_pixels:
                self._photos.popitem(last=False)
        return photo

    def _pixels(self) -> int:
        return sum(p.width * p.height for p, _ in self._photos.values())


def stored_table(session: Session, row: Inspection) -> TileTable:
    """The map's tile table; 409 for a map stored before tile tables (migration 0006)."""
    if row.tiles_blob_id is None:
        raise Conflict(
            f"inspection {row.id} was stored before tile tables: inspect the photo again"
        )
    return read_tile_table(session, row.tiles_blob_id)


def map_photo(cache: PhotoCache, session: Session, row: Inspection, max_pixels: int) -> MapPhoto:
    """The oriented photo of a finished map and its tile grid, decoded once and cached."""

    def decode() -> MapPhoto:
        grid = stored_table(session, row).grid
        return open_image(read_bytes(session, row.image_blob_id), max_pixels), grid

    return cache.get(row.id, decode)
