"""A fixed number of places for costly work, taken without waiting: a request that finds
them all taken is answered 429 at once (with Retry-After) instead of queueing in memory."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from core.errors import TooManyRequests


class Slots:
    def __init__(self, places: int, what: str, setting: str, retry_after_s: int = 5) -> None:
        self.places = places
        self.what = what
        self.setting = setting
        self.retry_after_s = retry_after_s
        self._taken = 0
        self._lock = threading.Lock()

    @property
    def taken(self) -> int:
        with self._lock:
            return self._taken

    @contextmanager
    def hold(self) -> Iterator[None]:
        """One place for the block's duration; TooManyRequests when none is free."""
        with self._lock:
            if self._taken >= self.places:
                raise TooManyRequests(
                    f"{self.places} {self.what} are under way, the most at once ({self.setting}): "
                    "retry later",
                    headers={"Retry-After": str(self.retry_after_s)},
                )
            self._taken += 1
        try:
            yield
        finally:
            with self._lock:
                self._taken -= 1
