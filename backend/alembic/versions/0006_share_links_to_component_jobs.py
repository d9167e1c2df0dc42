"""share links to component jobs

A share link now points at an analysis or at a component job (exactly one of them).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22 21:41:46.908544
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("share_links", schema=None) as batch_op:
        batch_op.add_column(sa.Column("component_job_id", sa.String(length=32), nullable=True))
        batch_op.alter_column("analysis_id", existing_type=sa.VARCHAR(length=32), nullable=True)
        batch_op.create_index(
            batch_op.f("ix_share_links_component_job_id"), ["component_job_id"], unique=False
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_share_links_component_job_id_component_jobs"),
            "component_jobs",
            ["component_job_id"],
            ["id"],
            ondelete="CASCADE",
        )
        batch_op.create_check_constraint(
            "one_target", "(analysis_id IS NULL) <> (component_job_id IS NULL)"
        )


def downgrade() -> None:
    # links to component jobs cannot exist before this revision
    op.execute("DELETE FROM share_links WHERE component_job_id IS NOT NULL")
    with op.batch_alter_table("share_links", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("ck_share_links_one_target"), type_="check")
        batch_op.drop_constraint(
            batch_op.f("fk_share_links_component_job_id_component_jobs"), type_="foreignkey"
        )
        batch_op.drop_index(batch_op.f("ix_share_links_component_job_id"))
        batch_op.alter_column("analysis_id", existing_type=sa.VARCHAR(length=32), nullable=False)
        batch_op.drop_column("component_job_id")
