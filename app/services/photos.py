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

from models.inference import TileGrid

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
