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


def test_two_active_models_cannot_both_be_stored(database_url):
    """Two activations racing can no longer leave two active models (#13 item 14)."""
    import pytest
    from sqlalchemy.exc import IntegrityError

    from core.blobs import store_bytes
    from core.catalog import activate
    from core.db import transaction
    from core.tables import NetworkModel

    upgrade(database_url)
    ids = []
    with transaction(database_url) as session:
        blob = store_bytes(session, b"weights", 1 << 20, "application/octet-stream")
        for name in ("a", "b"):
            row = NetworkModel(
                name=name,
                backbone="resnet18",
                classes=["crack", "no_crack"],
                defect_classes=["crack"],
                input_size=32,
                temperature=1.0,
                content_hash=name * 64,
                blob_id=blob.id,
                metrics={},
                config={},
            )
            session.add(row)
            session.flush()
            ids.append(row.id)
        activate(session, ids[0])
    with pytest.raises(IntegrityError), transaction(database_url) as session:
        session.get(NetworkModel, ids[1]).is_active = True  # as a racing activation would
    with transaction(database_url) as session:
        activate(session, ids[1])  # the proper way still works
    with transaction(database_url) as session:
        assert [m.id for m in session.query(NetworkModel).filter_by(is_active=True)] == [ids[1]]
