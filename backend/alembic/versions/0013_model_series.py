"""model series

Checkpoints of one model uploaded together (or trained by the service): each is an ordinary
model row with the series' name and its training step.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30 19:35:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("models", schema=None) as batch_op:
        batch_op.add_column(sa.Column("series", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("series_step", sa.Integer(), nullable=True))
        batch_op.create_index("ix_models_series", ["series"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("models", schema=None) as batch_op:
        batch_op.drop_index("ix_models_series")
        batch_op.drop_column("series_step")
        batch_op.drop_column("series")
