"""run labels

Reserved for issue 13 section 2 (organise runs): names, notes and tags of analyses. Empty until
that work fills it in: its upgrade and downgrade do nothing, so the chain 0014 -> 0015 -> 0016
-> 0017 holds while it is built.

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-30 21:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
