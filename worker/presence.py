"""The worker's presence row (core/presence.py), renewed from a thread of the Celery main."""

from __future__ import annotations

import contextlib
import logging
import os
import threading

from core.config import Settings
from core.db import transaction
from core.presence import announce, withdraw
from core.tables import new_id

log = logging.getLogger("crackscan.presence")


class Presence:
    """Announces this worker every ttl/3 seconds until stopped; a dead worker's row goes
    stale after the TTL, a stopped worker's row is deleted."""

    def __init__(self, settings: Settings, hostname: str) -> None:
        self.settings = settings
        self.hostname = hostname
        self.worker_id = new_id()
        self.interval = max(0.5, settings.worker_presence_ttl_s / 3)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="presence", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        # the database is away: the row goes stale instead
        with contextlib.suppress(Exception), transaction(self.settings.db_url) as session:
            withdraw(session, self.worker_id)

    def beat(self) -> None:
        with transaction(self.settings.db_url) as session:
            announce(
                session,
                self.worker_id,
                self.hostname,
                os.getpid(),
                self.settings.worker_presence_ttl_s,
            )

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.beat()
            except Exception as exc:  # database away: try again next round
                log.warning("could not write this worker's presence: %s", exc)
            self._stop.wait(self.interval)
