"""job leases

Every kind of job row (model validation, analysis item, chunk, component job) gets a lease:
who holds it (``lease_owner``), until when (``lease_expires_at``; without an owner, the time
by which a queued task should have started) and how many times a sweep re-queued it.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 16:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("models", "analysis_items", "chunks", "component_jobs")


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("lease_owner", sa.String(length=32), nullable=True))
            batch_op.add_column(
                sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True)
            )
            batch_op.add_column(
                sa.Column("attempts", sa.Integer(), nullable=False, server_default="0")
            )
            batch_op.create_index(f"ix_{table}_lease_expires_at", ["lease_expires_at"])


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(f"ix_{table}_lease_expires_at")
            batch_op.drop_column("attempts")
            batch_op.drop_column("lease_expires_at")
            batch_op.drop_column("lease_owner")
