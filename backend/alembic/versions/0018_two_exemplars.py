"""two exemplars

A component job compares the model with up to two exemplary models (seed 001 uses two):
the second one's id, deleted with that model as the first one's is.

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-30 22:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("component_jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("second_compare_model_id", sa.String(32), nullable=True))
        batch_op.create_foreign_key(
            "fk_component_jobs_second_compare_model_id_models",
            "models",
            ["second_compare_model_id"],
            ["id"],
            ondelete="CASCADE",
        )


def downgrade() -> None:
    with op.batch_alter_table("component_jobs", schema=None) as batch_op:
        batch_op.drop_constraint(
            "fk_component_jobs_second_compare_model_id_models", type_="foreignkey"
        )
        batch_op.drop_column("second_compare_model_id")
