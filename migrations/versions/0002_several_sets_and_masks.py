"""several datasets per job; masks-layout tile details per dataset

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 20:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("training_jobs") as batch:
        batch.add_column(sa.Column("dataset_ids", sa.JSON(), nullable=True))
    with op.batch_alter_table("datasets") as batch:
        batch.add_column(sa.Column("tile_px", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("details", sa.JSON(), nullable=True))
    # Jobs from before several sets trained on their one set.
    jobs = sa.table(
        "training_jobs",
        sa.column("id", sa.String),
        sa.column("dataset_id", sa.String),
        sa.column("dataset_ids", sa.JSON),
    )
    bind = op.get_bind()
    rows = bind.execute(sa.select(jobs.c.id, jobs.c.dataset_id)).all()
    for job_id, dataset_id in rows:
        ids = [] if dataset_id is None else [dataset_id]
        bind.execute(jobs.update().where(jobs.c.id == job_id).values(dataset_ids=ids))


def downgrade() -> None:
    with op.batch_alter_table("datasets") as batch:
        batch.drop_column("details")
        batch.drop_column("tile_px")
    with op.batch_alter_table("training_jobs") as batch:
        batch.drop_column("dataset_ids")
