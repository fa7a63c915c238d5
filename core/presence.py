"""Which training workers are alive: rows of worker_presence seen within the TTL.

Workers write their row (worker/presence.py); the API reads the count for /readyz and
/metrics. The database holds it, not the broker, so it works with Redis and with the
embedded filesystem queue alike.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from core.tables import WorkerPresence, utcnow

FORGET_AFTER_TTLS = 20  # rows of workers dead this long are deleted: the table stays small


def alive_workers(session: Session, ttl_s: float) -> int:
    """Workers whose row was written within ttl_s."""
    since = utcnow() - timedelta(seconds=ttl_s)
    query = select(func.count()).select_from(WorkerPresence).where(WorkerPresence.seen_at >= since)
    return int(session.scalar(query) or 0)


def announce(session: Session, worker_id: str, hostname: str, pid: int, ttl_s: float) -> None:
    """Write (or renew) this worker's row, and delete rows of workers long dead."""
    row = session.get(WorkerPresence, worker_id)
    if row is None:
        session.add(WorkerPresence(id=worker_id, hostname=hostname[:200], pid=pid))
    else:
        row.seen_at = utcnow()
    old = utcnow() - timedelta(seconds=ttl_s * FORGET_AFTER_TTLS)
    session.execute(delete(WorkerPresence).where(WorkerPresence.seen_at < old))


def withdraw(session: Session, worker_id: str) -> None:
    """A clean stop: the worker is gone at once, not after the TTL."""
    session.execute(delete(WorkerPresence).where(WorkerPresence.id == worker_id))
