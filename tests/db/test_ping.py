"""The pool checks a PostgreSQL connection at checkout in one round trip (`_ping_once`)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.util import greenlet_spawn

from app.db.engine import connect_to_begin, make_engine

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


async def test_a_live_commands_checkout_check_is_its_begin(pg_database: str) -> None:
    """`connect_to_begin`: the check at checkout is the transaction's BEGIN; the
    statements follow in that transaction with no BEGIN of their own, and the commit
    ends it. A connection dropped since its last use is replaced as by the ping."""
    engine = make_engine(pg_database, pool_size=1, max_overflow=0)
    sync = engine.sync_engine
    sent: list[str] = []

    def command(value: int) -> int:
        with connect_to_begin(sync) as conn:
            with conn.begin():
                conn.execute(text("CREATE TABLE IF NOT EXISTS probe (v int)"))
                conn.execute(text("INSERT INTO probe VALUES (:v)"), {"v": value})
            pid: int = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
            conn.rollback()
            return pid

    try:
        pid = await greenlet_spawn(command, 1)  # a fresh connection: no check at all
        async with engine.connect() as conn:
            (await _driver(conn)).add_query_logger(lambda record: sent.append(record.query))
        await asyncio.sleep(0)
        sent.clear()

        assert await greenlet_spawn(command, 2) == pid  # the same pooled connection
        await asyncio.sleep(0)
        begins = [q for q in sent if q.startswith("BEGIN")]
        assert "SELECT 1" not in sent, sent
        assert len(begins) == 2, sent  # one per transaction: the insert's, the pid's
        assert sent.index(begins[0]) == 0, "the check at checkout is the BEGIN"
        assert "COMMIT;" in sent, sent

        killer = make_engine(pg_database)
        async with killer.connect() as other:
            await other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            # Both inserts were committed, nothing else is pending.
            values = (await other.execute(text("SELECT v FROM probe ORDER BY v"))).scalars()
            assert list(values) == [1, 2]
        await killer.dispose()
        # The pooled connection is dead: its BEGIN fails at checkout, a new one is used.
        assert await greenlet_spawn(command, 3) != pid
        async with engine.connect() as conn:
            rows = (await conn.execute(text("SELECT v FROM probe ORDER BY v"))).scalars()
            assert list(rows) == [1, 2, 3]
    finally:
        await engine.dispose()
