"""tile labels: an inspector's crack / no-crack answer for a tile of an inspection's map

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 07:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "tile_labels",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("inspection_id", sa.String(length=32), nullable=False),
        sa.Column("row", sa.Integer(), nullable=False),
        sa.Column("col", sa.Integer(), nullable=False),
        sa.Column("label", sa.String(length=100), nullable=False),
        sa.Column("api_key_id", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["inspection_id"],
            ["inspections.id"],
            name=op.f("fk_tile_labels_inspection_id_inspections"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["api_key_id"],
            ["api_keys.id"],
            name=op.f("fk_tile_labels_api_key_id_api_keys"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tile_labels")),
        sa.UniqueConstraint(
            "inspection_id", "row", "col", name=op.f("uq_tile_labels_inspection_id")
        ),
    )
    with op.batch_alter_table("tile_labels") as batch:
        batch.create_index(batch.f("ix_tile_labels_inspection_id"), ["inspection_id"])
        batch.create_index(batch.f("ix_tile_labels_created_at"), ["created_at"])


def downgrade() -> None:
    op.drop_table("tile_labels")
