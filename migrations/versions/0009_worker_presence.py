"""worker presence: a row per live training worker, for /readyz and /metrics

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 19:15:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "worker_presence",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("hostname", sa.String(200), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_worker_presence")),
    )
    op.create_index(op.f("ix_worker_presence_seen_at"), "worker_presence", ["seen_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_worker_presence_seen_at"), table_name="worker_presence")
    op.drop_table("worker_presence")
