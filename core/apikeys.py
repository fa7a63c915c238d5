"""API keys: created once and shown once, stored as sha256 hashes, with scopes."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.errors import Conflict, NotFound
from core.tables import ApiKey, utcnow

SCOPES = ("read", "inspect", "train", "admin")
LAST_USED_EVERY_S = 60.0  # how often a key's last_used_at is written, at most


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_api_key(session: Session, scopes: list[str], name: str = "") -> tuple[ApiKey, str]:
    """Store a new key; returns (row, the plaintext key, which is not stored)."""
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise ValueError(f"scopes must be a non-empty subset of {SCOPES}, got {scopes}")
    key = "cs_" + secrets.token_urlsafe(32)
    row = ApiKey(name=name, prefix=key[:10], key_hash=hash_key(key), scopes=sorted(set(scopes)))
    session.add(row)
    session.flush()
    return row, key


def verify_api_key(session: Session, key: str) -> ApiKey | None:
    """The live key row for a presented key, or None. Its last_used_at is written at most
    once every LAST_USED_EVERY_S, so reads by a busy key do not each write a row."""
    row = session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(key)))
    if row is None or row.revoked_at is not None:
        return None
    now, last = utcnow(), row.last_used_at
    if last is None or not timedelta(0) <= now - last < timedelta(seconds=LAST_USED_EVERY_S):
        row.last_used_at = now
    return row


def revoke_api_key(session: Session, key_id: str) -> ApiKey:
    """Revoke a key by id (or its shown prefix): it is refused from the next request on.

    Revoking twice keeps the first time. Raises NotFound when no key matches, and
    Conflict when a prefix matches more than one.
    """
    rows = list(
        session.scalars(select(ApiKey).where((ApiKey.id == key_id) | (ApiKey.prefix == key_id)))
    )
    if not rows:
        raise NotFound(f"no API key {key_id}")
    if len(rows) > 1:
        raise Conflict(f"{len(rows)} keys start with {key_id}: give the key's id")
    row = rows[0]
    if row.revoked_at is None:
        row.revoked_at = utcnow()
    session.flush()
    return row


def has_scope(granted: list[str], needed: str) -> bool:
    return "admin" in granted or needed in granted
