"""Migrations upgrade an empty database on both backends and match the models."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

import app.db.models  # noqa: F401
from app.db.engine import make_engine
from app.db.migrate import alembic_config, upgrade
from tests import pg


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
    else:
        url = pg.create_database()
        yield url
        pg.drop_database(url)


def _diff(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(
        connection,
        opts={
            "compare_type": True,
            "compare_server_default": True,
            "render_as_batch": connection.dialect.name == "sqlite",
        },
    )
    return list(compare_metadata(context, SQLModel.metadata))


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


async def test_upgrade_from_empty_creates_every_table_and_has_no_drift(empty_url: str) -> None:
    engine = make_engine(empty_url)
    try:
        async with engine.connect() as conn:
            assert await conn.run_sync(_tables) == set()
        await upgrade(engine)
        async with engine.connect() as conn:
            tables = await conn.run_sync(_tables)
            assert tables == set(SQLModel.metadata.tables) | {"alembic_version"}
            assert await conn.run_sync(_diff) == []
    finally:
        await engine.dispose()


async def test_downgrade_to_base_and_up_again(empty_url: str) -> None:
    engine = make_engine(empty_url)

    def _downgrade(connection: Connection) -> None:
        config = alembic_config(empty_url)
        config.attributes["connection"] = connection
        command.downgrade(config, "base")

    try:
        await upgrade(engine)
        async with engine.begin() as conn:
            await conn.run_sync(_downgrade)
        async with engine.connect() as conn:
            assert await conn.run_sync(_tables) == {"alembic_version"}
        await upgrade(engine)
        async with engine.connect() as conn:
            assert await conn.run_sync(_diff) == []
    finally:
        await engine.dispose()


def test_single_head() -> None:
    from alembic.script import ScriptDirectory

    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    assert len(heads) == 1
