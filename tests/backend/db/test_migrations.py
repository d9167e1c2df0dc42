"""Migrations upgrade, downgrade and upgrade again, on SQLite and on Postgres."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect

from backend.db.base import Base
from backend.db.migrate import downgrade, upgrade
from tests.services import fresh_postgres_database

TABLES = {
    "workspaces", "models", "images", "analyses", "analysis_items", "chunks",
    "logit_tables", "share_links", "datasets", "component_jobs", "learned_baselines",
    "training_runs",
}  # fmt: skip


def tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def round_trip(url: str) -> None:
    upgrade(url)
    assert tables(url) == TABLES == set(Base.metadata.tables)
    downgrade(url)
    assert tables(url) == set()
    upgrade(url)
    assert tables(url) == TABLES


def test_sqlite_round_trip(tmp_path: Path) -> None:
    round_trip(f"sqlite:///{tmp_path / 'db.sqlite'}")


def test_postgres_round_trip() -> None:
    with fresh_postgres_database() as url:
        round_trip(url)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_migrations_match_the_models(backend: str, tmp_path: Path) -> None:
    """No drift: autogenerate against a migrated database finds nothing to do."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    def check(url: str) -> None:
        upgrade(url)
        engine = create_engine(url)
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(ctx, Base.metadata) == []
        engine.dispose()

    if backend == "sqlite":
        check(f"sqlite:///{tmp_path / 'db.sqlite'}")
    else:
        with fresh_postgres_database() as url:
            check(url)
