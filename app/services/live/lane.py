"""The live commands' own SQLite connection: the frequent commands (participants' and
the facilitator's) and drag checks without SQLAlchemy's connection layers.

On a SQLite file a live command already runs on the event loop's thread, one at a
time (`LiveService`'s write turn), its statements prebuilt as plans
(`app.db.direct`). What SQLAlchemy still adds around them (a pool checkout and
return, a `Connection` and its transaction, the async adapter's commit through a
greenlet) cost as much CPU as the statements, and in a live room every command
runs with cold processor caches, where each layer costs three to four times what a
tight loop shows (`python -m bench.commands --gap 0.02`).

`Lane` holds one bare sqlite3 connection for the worker's live writes. A command
runs on it whole: `BEGIN IMMEDIATE`, the handler's statements through
`LaneSession` (plans only), `COMMIT`. Its page cache stays warm too, since it makes
most of the worker's writes. Anything the lane cannot do falls back to the usual
path (`LiveService._transaction`), with nothing written:

- a statement that is not a plan, or any ORM use (`NeedsOrm`): rolled back, and
  that command type goes the usual way from then on (for the facilitator's commands,
  which need the ORM only in some phases, just this once: `LANE_TRIES`);
- a write lock held elsewhere (another process, or this worker's threaded engine):
  `BEGIN IMMEDIATE` fails at once (`busy_timeout=0`), and the usual path waits for
  the lock without blocking the loop.

A drag preview's checks run on it read only (`begin(write=False)`: a plain `BEGIN`,
rolled back), which needs no write lock.

The driver's errors are raised as SQLAlchemy's (`IntegrityError`, `OperationalError`
...), as the usual path raises them, so callers handle both alike.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable
from typing import Any, NoReturn

from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db import direct
from app.db.engine import lane_connector
from app.db.inline import is_busy


class NeedsOrm(Exception):
    """The handler needs more than plans: run the command on the usual path."""


class LaneSession:
    """The `AsyncSession` methods handlers use, over the lane's connection: prebuilt
    Core statements with bound parameters (plans) only."""

    __slots__ = ("_connection", "_dispatch", "dialect")

    def __init__(self, connection: sqlite3.Connection, dialect: Dialect, dispatch: Any) -> None:
        self._connection = connection
        self._dispatch = dispatch
        self.dialect = dialect

    async def exec(
        self, statement: Any, *, params: dict[str, Any] | None = None, **kwargs: Any
    ) -> Any:
        if params is None or kwargs:
            raise NeedsOrm
        plan = direct.plan_for(statement, params, self.dialect)
        if plan is None:
            raise NeedsOrm
        values = plan.values(params)
        if self._dispatch.before_cursor_execute:
            # Listeners on the live engine see these statements as any other
            # (tests count statements this way); there are none in production.
            self._dispatch.before_cursor_execute(None, None, plan.sql, values, None, False)
        try:
            return direct.run_on_sqlite(self._connection, plan, values)
        except sqlite3.Error as exc:
            _raise_as_sqlalchemy(exc, plan.sql, values)

    def get_bind(self) -> LaneSession:
        return self  # handlers read `get_bind().dialect`

    async def execute(self, *_args: Any, **_kwargs: Any) -> NoReturn:
        raise NeedsOrm

    async def get(self, *_args: Any, **_kwargs: Any) -> NoReturn:
        raise NeedsOrm

    async def delete(self, _instance: Any) -> NoReturn:
        raise NeedsOrm

    async def flush(self) -> NoReturn:
        raise NeedsOrm

    def add(self, _instance: Any) -> NoReturn:
        raise NeedsOrm


def _raise_as_sqlalchemy(exc: sqlite3.Error, statement: str, values: Any) -> NoReturn:
    raise DBAPIError.instance(statement, values, exc, sqlite3.Error) from exc


class Lane:
    """One bare sqlite3 connection for a worker's live writes, opened when first used."""

    def __init__(
        self, connect: Callable[[], sqlite3.Connection], dialect: Dialect, dispatch: Any
    ) -> None:
        self._connect = connect
        self._dialect = dialect
        self._dispatch = dispatch
        self._connection: sqlite3.Connection | None = None
        self.orm_types: set[str] = set()  # command types that needed the usual path
        self.commits = 0
        self.reads = 0

    def begin(self, *, write: bool = True) -> LaneSession | None:
        """Start a transaction; None when the write lock is held elsewhere.

        `write=False`: a read-only check (a drag preview), which takes no lock and is
        rolled back; `reads` counts them.
        """
        if self._connection is None:
            self._connection = self._connect()
        statement = "BEGIN IMMEDIATE" if write else "BEGIN"
        try:
            self._connection.execute(statement)
        except sqlite3.OperationalError as exc:
            if is_busy(exc):
                return None
            self.close()
            _raise_as_sqlalchemy(exc, statement, ())
        if not write:
            self.reads += 1
        return LaneSession(self._connection, self._dialect, self._dispatch)

    def commit(self) -> None:
        assert self._connection is not None
        try:
            self._connection.execute("COMMIT")
        except sqlite3.Error as exc:
            self.rollback()
            _raise_as_sqlalchemy(exc, "COMMIT", ())
        self.commits += 1

    def rollback(self) -> None:
        connection = self._connection
        if connection is None or not connection.in_transaction:
            return
        try:
            connection.execute("ROLLBACK")
        except sqlite3.Error:
            self.close()  # a connection that cannot roll back is not used again

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(sqlite3.Error):
                connection.close()


def make_lane(engine: AsyncEngine, live_engine: AsyncEngine) -> Lane | None:
    """The lane for the app's main engine and its live one; None where the live
    commands have no SQLite file of their own (PostgreSQL, an in-memory SQLite)."""
    connect = lane_connector(engine)
    if connect is None or live_engine is engine:
        return None
    sync = live_engine.sync_engine
    return Lane(connect, sync.dialect, sync.dispatch)
