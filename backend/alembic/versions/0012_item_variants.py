"""item variants

A stability analysis runs each image several times: as it is, with Gaussian noise (one item
per draw) and under a PGD attack. ``analysis_items.variant`` says which (null: as it is).

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30 19:25:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("analysis_items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("variant", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("analysis_items", schema=None) as batch_op:
        batch_op.drop_column("variant")
