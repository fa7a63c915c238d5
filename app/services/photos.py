"""Decoded inspection photos and their tile grids for tile crops and photo.jpg: decoded once
per photo at a time, under a memory budget, and kept in a small LRU bounded in pixels.

A reviewer asks for the crops of one map in a row; decoding a 42 MP JPEG (and reading the
map's tile table for its grid) once per crop would take a second each, so the last photos
decoded are kept with their grids, up to `max_pixels` in all. Parallel first requests for
one photo wait for its one decode (8 of them decoded it 8 times, 1.16 GB for a 36 MP photo),
and decodes of different photos run together only while their pixels fit `decode_bytes`:
past it a request is answered 503 with Retry-After. One decode may always run, so any photo
under the pixel cap can be served.
"""

from __future__ import annotations

import sys
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future

from PIL import Image
from sqlalchemy.orm import Session

from app.services.inspections import read_tile_table
from core.blobs import read_bytes
from core.errors import Conflict, ServiceUnavailable
from core.tables import Inspection
from models.inference import TileGrid, TileTable, open_image, probe

MapPhoto = tuple[Image.Image, TileGrid]
DECODE_BYTES_PER_PIXEL = 4  # an RGB photo, with room for the decoder's own buffers
DECODE_RETRY_AFTER_S = 2


class PhotoCache:
    def __init__(self, max_pixels: int, decode_bytes: int = 1 << 30) -> None:
        self.max_pixels = max_pixels
        self.decode_bytes = decode_bytes
        self.decodes = 0  # photos decoded since start (each one once while it is cached)
        self._photos: OrderedDict[str, MapPhoto] = OrderedDict()
        self._pending: dict[str, Future[MapPhoto]] = {}
        self._decoding = 0  # bytes the running decodes may take
        self._lock = threading.Lock()

    def get(
        self,
        key: str,
        read: Callable[[], tuple[bytes, TileGrid]],
        decode: Callable[[bytes], Image.Image],
    ) -> MapPhoto:
        """The photo and grid for `key`: from the cache, from a decode of it already running,
        or read (its file's bytes and grid) and decoded here (blocking).

        Raises:
            ServiceUnavailable: other decodes hold the memory this one would take.
        """
        with self._lock:
            if key in self._photos:
                self._photos.move_to_end(key)
                return self._photos[key]
            pending = self._pending.get(key)
            if pending is None:
                mine: Future[MapPhoto] = Future()
                self._pending[key] = mine
        if pending is not None:
            return pending.result()  # the same photo, or the same error
        try:
            photo = self._read_and_decode(read, decode)
        except BaseException as exc:
            with self._lock:
                self._pending.pop(key, None)
            mine.set_exception(exc)
            raise
        with self._lock:
            self._pending.pop(key, None)
            self._photos[key] = photo
            self._photos.move_to_end(key)
            while len(self._photos) > 1 and self._pixels() > self.max_pixels:
                self._photos.popitem(last=False)
        mine.set_result(photo)
        return photo

    def _read_and_decode(
        self, read: Callable[[], tuple[bytes, TileGrid]], decode: Callable[[bytes], Image.Image]
    ) -> MapPhoto:
        data, grid = read()
        _, width, height = probe(data, sys.maxsize)  # the header: the decode's cost
        cost = width * height * DECODE_BYTES_PER_PIXEL
        with self._lock:
            if self._decoding and self._decoding + cost > self.decode_bytes:
                raise ServiceUnavailable(
                    f"photos are being decoded for other requests; this one's "
                    f"{width}x{height} pixels do not fit the "
                    f"{self.decode_bytes >> 20} MiB left for it (CRACKSCAN_PHOTO_DECODE_MB): "
                    "retry shortly",
                    headers={"Retry-After": str(DECODE_RETRY_AFTER_S)},
                )
            self._decoding += cost
            self.decodes += 1
        try:
            image = decode(data)
        finally:
            with self._lock:
                self._decoding -= cost
        return image, grid

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

    def read() -> tuple[bytes, TileGrid]:
        return read_bytes(session, row.image_blob_id), stored_table(session, row).grid

    return cache.get(row.id, read, lambda data: open_image(data, max_pixels))
