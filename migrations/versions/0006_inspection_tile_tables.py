"""inspection tile tables: a map's tiles are stored as a compact .npz blob, not inline JSON

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 06:30:00

Rows written before this keep their inline tiles in `crackmap` and have no tile table;
the API serves both.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("inspections") as batch:
        batch.add_column(sa.Column("tiles_blob_id", sa.String(length=32), nullable=True))
        batch.create_foreign_key(
            "fk_inspections_tiles_blob_id_blobs", "blobs", ["tiles_blob_id"], ["id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("inspections") as batch:
        batch.drop_constraint("fk_inspections_tiles_blob_id_blobs", type_="foreignkey")
        batch.drop_column("tiles_blob_id")
