"""Async engine and sessions.

SQLite runs in WAL mode with a busy timeout and enforced foreign keys, so the
embedded default behaves like a real database under concurrent writers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextvars import ContextVar
from typing import Any

from sqlalchemy import Connection, Engine, event, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

from app.db.inline import inline_connector

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 5000
SQLITE_CONNECT_ARGS: dict[str, Any] = {"timeout": 30}


def make_engine(url: str, **kwargs: Any) -> AsyncEngine:
    if url.startswith("sqlite"):
        # No connections beyond the pool's five: SQLite reads gain nothing from more
        # threads than that on a small machine, and each connection opened for a
        # burst (25 people joining at once) kept its page cache and thread stack:
        # about 0.5 MB that the benchmark counted against the first 25 sockets.
        if not _in_memory(url):  # an in-memory database has one static connection
            kwargs.setdefault("max_overflow", 0)
        engine = create_async_engine(url, connect_args=SQLITE_CONNECT_ARGS, **kwargs)
        _set_sqlite_pragmas(engine, SQLITE_BUSY_TIMEOUT_MS)
        return engine
    # PostgreSQL too keeps to its pool (five connections per worker): a burst of joins
    # waits its turn for a connection instead of opening (and later closing) ten more,
    # each with its own buffers and statement cache in the worker's memory.
    kwargs.setdefault("max_overflow", 0)
    engine = create_async_engine(url, pool_pre_ping=True, **kwargs)
    if engine.dialect.driver == "asyncpg":
        engine.sync_engine.dialect.do_ping = _ping_once  # type: ignore[method-assign]
    return engine


# Set while `connect_to_begin` checks a connection out: see `_ping_once`.
_BEGIN_AT_CHECKOUT: ContextVar[bool] = ContextVar("begin_at_checkout", default=False)


def connect_to_begin(engine: Engine) -> Connection:
    """`engine.connect()` for a caller that begins a transaction at once (a live
    command, in its greenlet): on PostgreSQL the pool's check of the connection is
    that transaction's BEGIN, one round trip where a check and a BEGIN are two."""
    token = _BEGIN_AT_CHECKOUT.set(True)
    try:
        return engine.connect()
    finally:
        _BEGIN_AT_CHECKOUT.reset(token)


def _ping_once(dbapi_connection: Any) -> bool:
    """The pool's check of a PostgreSQL connection at checkout, in one round trip.

    SQLAlchemy's asyncpg ping wraps its statement in a transaction (for PgBouncer's
    transaction mode): BEGIN, the statement, ROLLBACK, three round trips before every
    checkout. One simple query is one, and fails the same way on a connection the
    server has dropped: the error goes through the adapter, so the pool sees a
    disconnect and opens a new connection.

    For `connect_to_begin` the check is the transaction's own BEGIN, sent by the
    adapter as its first statement would have (same isolation level, and marked as
    started, so that statement sends no BEGIN of its own). A dead connection fails
    it the same way, before anything of the caller's has been sent.
    """
    if (
        _BEGIN_AT_CHECKOUT.get()
        and not dbapi_connection.autocommit
        and not dbapi_connection._started
    ):
        # Raises the adapter's translated error itself, as a statement would.
        dbapi_connection.await_(dbapi_connection._start_transaction())
        return True
    try:
        dbapi_connection.await_(dbapi_connection._connection.execute("SELECT 1"))
    except Exception as error:
        dbapi_connection._handle_exception(error)
    return True


def _in_memory(url: str) -> bool:
    database = make_url(url).database or ""
    return database in ("", ":memory:") or "mode=memory" in url


def make_live_engine(engine: AsyncEngine) -> AsyncEngine:
    """The engine the live commands write with; `engine` is the app's main one.

    On a SQLite file, an engine whose connections run on the event loop's thread
    (`app.db.inline`: no thread hop per call; the same PRAGMAs, except that a busy
    write lock is waited for without blocking the loop). Anywhere else (PostgreSQL,
    an in-memory SQLite that a second engine would not share) `engine` itself.
    """
    found = _sqlite_file(engine)
    if found is None:
        return engine
    database, cparams = found
    connect = inline_connector(
        database, {**cparams, **SQLITE_CONNECT_ARGS}, busy_timeout_ms=SQLITE_BUSY_TIMEOUT_MS
    )
    live = create_async_engine(engine.sync_engine.url, async_creator=connect)
    # Its commits never checkpoint: a checkpoint copies pages into the database file
    # and syncs it to disk, which on the loop's thread would hold up every socket for
    # as long as the disk takes. `Checkpointer` does it on the threaded engine instead.
    _set_sqlite_pragmas(live, 0, autocheckpoint=False)
    return live


def _sqlite_file(engine: AsyncEngine) -> tuple[str, dict[str, Any]] | None:
    """The database file and connect arguments of an aiosqlite engine on a file."""
    sync = engine.sync_engine
    if sync.dialect.name != "sqlite" or sync.dialect.driver != "aiosqlite":
        return None
    cargs, cparams = sync.dialect.create_connect_args(sync.url)
    database = str(cargs[0])
    if database == ":memory:" or "mode=memory" in database:
        return None
    return database, dict(cparams)


def lane_connector(engine: AsyncEngine) -> Callable[[], sqlite3.Connection] | None:
    """What opens the live commands' bare sqlite3 connection (`app.services.live.lane`),
    for the app's main engine `engine`: the file, arguments and PRAGMAs of the live
    engine (`make_live_engine`), in autocommit mode (the lane says BEGIN and COMMIT
    itself). None where there is no live engine of its own (PostgreSQL, in-memory)."""
    found = _sqlite_file(engine)
    if found is None:
        return None
    database, cparams = found
    args = {**cparams, **SQLITE_CONNECT_ARGS, "timeout": 0, "isolation_level": None}

    def connect() -> sqlite3.Connection:
        connection: sqlite3.Connection = sqlite3.connect(database, **args)
        _apply_sqlite_pragmas(connection, 0, autocheckpoint=False)
        return connection

    return connect


def _set_sqlite_pragmas(
    engine: AsyncEngine, busy_timeout_ms: int, *, autocheckpoint: bool = True
) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
        _apply_sqlite_pragmas(dbapi_conn, busy_timeout_ms, autocheckpoint=autocheckpoint)


def _apply_sqlite_pragmas(dbapi_conn: Any, busy_timeout_ms: int, *, autocheckpoint: bool) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    if not autocheckpoint:
        cur.execute("PRAGMA wal_autocheckpoint=0")
    cur.close()


class Checkpointer:
    """Copies SQLite's write-ahead log into the database file, off the loop's thread.

    The live engine's commits do not checkpoint (`make_live_engine`), so this task
    does, every `interval_s`, with a PASSIVE checkpoint on `engine` (the threaded
    one): it waits for no one and no one waits for it; the disk sync happens on that
    engine's worker thread. Only the pages written since the last checkpoint are
    copied, each once however often it changed.
    """

    def __init__(self, engine: AsyncEngine, interval_s: float = 1.0) -> None:
        self.engine = engine
        self.interval_s = interval_s
        self.last: tuple[int, int, int] | None = None  # (busy, log pages, checkpointed)
        self._task: asyncio.Task[None] | None = None

    async def run_once(self) -> tuple[int, int, int]:
        async with self.engine.connect() as conn:
            result = await conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
            row = result.one()
        self.last = (int(row[0]), int(row[1]), int(row[2]))
        return self.last

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.run_once()
            except Exception:
                # A full disk or a broken file: say so, and try again next time (the
                # log keeps every commit meanwhile; it only grows).
                log.exception("WAL checkpoint failed")

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="sqlite-checkpointer")

    async def stop(self) -> None:
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None


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
