"""one resumable checkpoint per job: the best-epoch copy duplicated it (the last
checkpoint carries the best weights), so its column and blobs go

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 23:55:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    jobs = sa.table(
        "training_jobs",
        sa.column("best_checkpoint_blob_id", sa.String),
        sa.column("last_checkpoint_blob_id", sa.String),
        sa.column("status", sa.String),
    )
    chunks = sa.table("blob_chunks", sa.column("blob_id", sa.String))
    blobs = sa.table("blobs", sa.column("id", sa.String))
    bind = op.get_bind()
    stale = [
        row[0]
        for row in bind.execute(
            sa.select(jobs.c.best_checkpoint_blob_id).where(
                jobs.c.best_checkpoint_blob_id.is_not(None)
            )
        )
    ]
    stale += [
        row[0]
        for row in bind.execute(
            sa.select(jobs.c.last_checkpoint_blob_id).where(
                jobs.c.status == "succeeded", jobs.c.last_checkpoint_blob_id.is_not(None)
            )
        )
    ]
    bind.execute(jobs.update().values(best_checkpoint_blob_id=None))
    bind.execute(
        jobs.update().where(jobs.c.status == "succeeded").values(last_checkpoint_blob_id=None)
    )
    with op.batch_alter_table("training_jobs") as batch:
        batch.drop_constraint("fk_training_jobs_best_checkpoint_blob_id_blobs", type_="foreignkey")
        batch.drop_column("best_checkpoint_blob_id")
    for blob_id in stale:
        bind.execute(chunks.delete().where(chunks.c.blob_id == blob_id))
        bind.execute(blobs.delete().where(blobs.c.id == blob_id))


def downgrade() -> None:
    with op.batch_alter_table("training_jobs") as batch:
        batch.add_column(sa.Column("best_checkpoint_blob_id", sa.String(length=32), nullable=True))
        batch.create_foreign_key(
            "fk_training_jobs_best_checkpoint_blob_id_blobs",
            "blobs",
            ["best_checkpoint_blob_id"],
            ["id"],
        )
