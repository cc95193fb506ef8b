"""SQLite connections that run on the event loop's thread, for the live commands.

aiosqlite gives every connection a worker thread and sends it each call (execute,
fetch, commit) through a queue, a future and `call_soon_threadsafe`: a live command
makes a dozen such round trips, and the hand-overs cost more CPU than its SQL.
`InlineConnection` runs each call at once on the caller's thread instead and never
starts the thread.

Why that is safe for the live commands (and only for them):

- Their transactions are short (a handful of statements on indexed rows) and, on
  SQLite, already run one at a time behind `LiveService`'s write lock, so running
  them on the loop adds no waiting for anyone but their own queue.
- Long reads (pages, exports, snapshots, the sockets' catch-up) stay on the threaded
  engine, so they never hold up the loop.

The trade-off is waiting for a write lock held elsewhere: by another process, or by
one of this process's own threaded-engine transactions (a join over HTTP, an
import). SQLite's busy handler would sleep on the loop's thread, holding up every
socket, and a same-process writer could not even finish until it gave up. So these
connections run with `busy_timeout=0`, and `InlineConnection` waits for a busy
write lock itself, with `asyncio.sleep` between tries, for as long as the busy
timeout of the threaded engine: the loop keeps running, and after the timeout the
caller gets the same "database is locked" error as before. The other PRAGMAs are
the threaded engine's.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable, Generator
from typing import Any

import aiosqlite

# SQLite's busy handler waits 1, 2, 5, 10, ... 100 ms between tries; so does this.
_BUSY_DELAYS_S = (0.001, 0.002, 0.005, 0.01, 0.015, 0.02, 0.025, 0.025, 0.025, 0.05, 0.05)
_BUSY_DELAY_MAX_S = 0.1
# Calls that SQLite rejects with SQLITE_BUSY before doing anything, so may be retried.
_RETRIABLE = frozenset({"execute", "executemany", "commit"})


def is_busy(exc: sqlite3.OperationalError) -> bool:
    return (getattr(exc, "sqlite_errorcode", 0) & 0xFF) == sqlite3.SQLITE_BUSY


class _RunAtOnce:
    """Takes the place of aiosqlite's queue to its worker thread: runs each call now.

    aiosqlite (and SQLAlchemy's isolation-level setter) put `(future, function)` pairs
    on that queue; here the function runs at once and settles the future.
    """

    def put_nowait(self, item: tuple[asyncio.Future[Any] | None, Callable[[], Any]]) -> None:
        future, function = item
        try:
            result = function()
        except Exception as exc:
            if future is not None and not future.done():
                future.set_exception(exc)
            return
        if future is not None and not future.done():
            future.set_result(result)


class InlineConnection(aiosqlite.Connection):
    """An aiosqlite connection whose calls run on the calling (event loop) thread."""

    def __init__(
        self,
        connector: Callable[[], sqlite3.Connection],
        *,
        busy_timeout_ms: int,
        iter_chunk_size: int = 64,
    ) -> None:
        super().__init__(connector, iter_chunk_size)
        self._tx = _RunAtOnce()  # type: ignore[assignment]
        self._busy_timeout_s = busy_timeout_ms / 1000

    def __await__(self) -> Generator[Any, None, aiosqlite.Connection]:
        # Connect without starting the worker thread.
        return self._connect().__await__()

    async def _execute(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        if not self._running or not self._connection:
            raise ValueError("Connection closed")
        try:
            return fn(*args, **kwargs)
        except sqlite3.OperationalError as exc:
            if not is_busy(exc) or getattr(fn, "__name__", "") not in _RETRIABLE:
                raise
        return await self._retry_busy(fn, *args, **kwargs)

    async def _retry_busy(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Wait for a write lock held elsewhere, yielding to the loop between tries."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._busy_timeout_s
        tries = 0
        while True:
            delay = _BUSY_DELAYS_S[tries] if tries < len(_BUSY_DELAYS_S) else _BUSY_DELAY_MAX_S
            remaining = deadline - loop.time()
            if remaining <= 0:
                # What SQLite's busy handler raises when its timeout runs out.
                raise sqlite3.OperationalError("database is locked")
            await asyncio.sleep(min(delay, remaining))
            tries += 1
            if not self._running or not self._connection:
                raise ValueError("Connection closed")
            try:
                return fn(*args, **kwargs)
            except sqlite3.OperationalError as exc:
                if not is_busy(exc):
                    raise


def inline_connector(
    database: str, connect_args: dict[str, Any], busy_timeout_ms: int
) -> Callable[[], Awaitable[InlineConnection]]:
    """What `create_async_engine(async_creator=...)` calls for each new connection.

    SQLite's own busy handler is off (`timeout=0`): `InlineConnection` waits instead.
    """
    args = {**connect_args, "timeout": 0}

    def connector() -> sqlite3.Connection:
        connection: sqlite3.Connection = sqlite3.connect(database, **args)
        return connection

    async def create() -> InlineConnection:
        connection = InlineConnection(connector, busy_timeout_ms=busy_timeout_ms)
        await connection._connect()
        return connection

    return create
