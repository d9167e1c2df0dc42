"""training runs

Reserved for issue 12 (training with the order losses): the training-run table. Empty until
that work fills it in: its upgrade and downgrade do nothing, so the chain 0014 -> 0015 -> 0016
-> 0017 holds while it is built.

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-30 21:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
