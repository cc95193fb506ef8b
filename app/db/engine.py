"""Async engine and sessions.

SQLite runs in WAL mode with a busy timeout and enforced foreign keys, so the
embedded default behaves like a real database under concurrent writers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

SQLITE_BUSY_TIMEOUT_MS = 5000


def make_engine(url: str, **kwargs: Any) -> AsyncEngine:
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30}, **kwargs)

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    return create_async_engine(url, pool_pre_ping=True, **kwargs)


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


async def session_scope(
    maker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    async with maker() as session:
        yield session


async def begin_consistent_read(session: AsyncSession) -> None:
    """Make every read that follows in this session see one moment of the database.

    Call it first, before the session has read anything. A snapshot (the workshop's
    `seq` and the rows it covers) read across several statements must not mix rows
    committed after that `seq`, or a client would apply those events twice. SQLite
    (WAL) gets an explicit read transaction; PostgreSQL, REPEATABLE READ.
    """
    if session.in_transaction():
        raise RuntimeError("begin_consistent_read must come before the session's first read")
    bind = session.get_bind()
    if bind.dialect.name == "sqlite":
        connection = await session.connection()
        await connection.exec_driver_sql("BEGIN")
    else:
        await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
