"""The migrations produce exactly the tables' schema, on SQLite and on PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from core.db import get_engine
from core.migrate import current_revision, head_revision, upgrade
from core.tables import Base


def test_migrations_match_the_tables(database_url):
    upgrade(database_url)
    assert current_revision(database_url) == head_revision(database_url)
    with get_engine(database_url).connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, Base.metadata)
    assert diff == [], diff
    upgrade(database_url)  # idempotent
