"""The pool checks a PostgreSQL connection at checkout in one round trip (`_ping_once`)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from app.db.engine import make_engine

pytestmark = pytest.mark.postgres


async def _driver(conn: AsyncConnection) -> Any:
    """The asyncpg connection under a checked-out SQLAlchemy connection."""
    raw = await conn.get_raw_connection()
    return raw.driver_connection


async def test_a_checkout_pings_once_and_a_dropped_connection_is_replaced(
    pg_database: str,
) -> None:
    engine = make_engine(pg_database, pool_size=1, max_overflow=0)
    sent: list[str] = []
    try:
        async with engine.connect() as conn:
            pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
            (await _driver(conn)).add_query_logger(lambda record: sent.append(record.query))
        await asyncio.sleep(0)  # asyncpg calls its loggers soon, not at once
        sent.clear()  # the reset on return (ROLLBACK)

        async with engine.connect() as conn:  # the same pooled connection, pinged
            await asyncio.sleep(0)
            assert sent == ["SELECT 1"], "one query: no BEGIN ... ROLLBACK around it"
            assert (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one() == pid

        killer = make_engine(pg_database)
        async with killer.connect() as other:
            await other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        await killer.dispose()
        # The pooled connection is dead: the ping fails, the pool opens a new one.
        async with engine.connect() as conn:
            new_pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        assert new_pid != pid
    finally:
        await engine.dispose()
