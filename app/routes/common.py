"""Helpers shared by the routes: pagination and lookups."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from core.errors import NotFound

T = TypeVar("T")


def get_or_404(session: Session, table: type[T], item_id: str, what: str) -> T:
    row = session.get(table, item_id)
    if row is None:
        raise NotFound(f"no {what} {item_id}")
    return row


def paginate(
    session: Session, query: Select[Any], limit: int, offset: int
) -> tuple[list[Any], int]:
    total = session.scalar(select(func.count()).select_from(query.order_by(None).subquery())) or 0
    rows = list(session.scalars(query.limit(limit).offset(offset)))
    return rows, int(total)
