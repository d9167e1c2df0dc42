"""dataset images

An analysis may take its images from an image set: each chosen image becomes an image row
that remembers its set (``dataset_id``) and is left out of the workspace's image list.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30 18:50:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.add_column(sa.Column("dataset_id", sa.String(length=32), nullable=True))
        batch_op.create_index("ix_images_dataset_id", ["dataset_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.drop_index("ix_images_dataset_id")
        batch_op.drop_column("dataset_id")
