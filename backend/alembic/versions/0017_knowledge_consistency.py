"""knowledge consistency

Issue 11 section 3 (knowledge consistency between two models, SCIENCE.md §8). A consistency
job is a component job of another kind: ``component_jobs`` gets ``kind`` ("components" for
every existing row, or "consistency") and ``compare_layer``, the layer of the second model
(``compare_model_id``) that the first model's ``layer`` is reconstructed from and into.

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-30 21:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("component_jobs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("kind", sa.String(length=16), nullable=False, server_default="components")
        )
        batch_op.add_column(sa.Column("compare_layer", sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("component_jobs", schema=None) as batch_op:
        batch_op.drop_column("compare_layer")
        batch_op.drop_column("kind")
