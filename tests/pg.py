"""PostgreSQL for tests: scratch databases on the machine's server.

Tests that need PostgreSQL fail loudly when CI=true and it is missing, and skip
elsewhere. Each test session creates its own scratch databases (dropped at the end)
through the admin URL, so runs never see each other's rows.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import asyncpg
import pytest

ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


T = TypeVar("T")


def run_sync(fn: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion from sync code, even inside a running loop."""

    async def _main() -> T:
        return await fn()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, _main()).result()


def require_service(name: str, error: BaseException) -> None:
    message = f"{name} is not available: {error}"
    if IN_CI:
        pytest.fail(f"{message} (CI=true: tests that need {name} must run)", pytrace=False)
    pytest.skip(message)


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(ADMIN_URL, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def create_database() -> str:
    """Create an empty scratch database; return its SQLAlchemy async URL."""
    name = f"cxw_test_{uuid.uuid4().hex[:12]}"
    try:
        run_sync(lambda: _admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        require_service("PostgreSQL", exc)
    base = ADMIN_URL.rsplit("/", 1)[0]
    return base.replace("postgresql://", "postgresql+asyncpg://", 1) + f"/{name}"


def drop_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    run_sync(lambda: _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def create_migrated_database() -> str:
    """A scratch database with every migration applied."""
    from app.db.engine import make_engine
    from app.db.migrate import upgrade

    url = create_database()

    async def _migrate() -> None:
        engine = make_engine(url)
        await upgrade(engine)
        await engine.dispose()

    run_sync(_migrate)
    return url
