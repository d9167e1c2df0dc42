"""run labels

Issue 13 section 2 (organise runs): analyses and component analyses get an optional name, a
note and tags (a JSON list of strings) that a person sets from the page; lists filter by tag.

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-30 21:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("analyses", "component_jobs")


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("name", sa.String(length=200), nullable=True))
            batch_op.add_column(sa.Column("note", sa.Text(), nullable=True))
            batch_op.add_column(sa.Column("tags", sa.JSON(), nullable=True))


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("tags")
            batch_op.drop_column("note")
            batch_op.drop_column("name")
