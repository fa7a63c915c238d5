"""at most one active model: a partial unique index, so two activations cannot both win

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 23:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    models = sa.table(
        "models",
        sa.column("id", sa.String),
        sa.column("is_active", sa.Boolean),
        sa.column("created_at", sa.DateTime),
    )
    bind = op.get_bind()
    active = bind.execute(
        sa.select(models.c.id).where(models.c.is_active.is_(True)).order_by(models.c.created_at)
    ).all()
    for (model_id,) in active[:-1]:  # a race left several: the newest stays active
        bind.execute(models.update().where(models.c.id == model_id).values(is_active=False))
    op.create_index(
        "uq_models_one_active",
        "models",
        ["is_active"],
        unique=True,
        postgresql_where=sa.text("is_active"),
        sqlite_where=sa.text("is_active"),
    )


def downgrade() -> None:
    op.drop_index("uq_models_one_active", table_name="models")
