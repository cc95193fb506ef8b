"""Prebuilt Core statements run straight on the driver's cursor: the live commands' path.

SQLAlchemy prepares every execution anew: a cache key for the statement, an
execution context, bound values converted one by one, result metadata. For a live
command's four or five short statements on indexed rows that costs several times
what the database spends on them. A `Plan` does that preparation once per
statement, dialect and set of parameter names (the SQL text, the order of the
values, the converters of the columns' types) and then only converts the values,
runs the text on the cursor of the session's own connection (same transaction) and
wraps the rows in an ordinary SQLAlchemy result. On the live SQLite engine
(`app.db.inline`) that cursor is sqlite3's own, not the async adapter's; on the
lane (`app.services.live.lane`, `run_on_sqlite`) there is no SQLAlchemy connection
at all.

Only statements that need nothing more from SQLAlchemy qualify (`plan_for` returns
None otherwise and the caller executes as usual):

- Core statements: no ORM entities to load;
- every value bound from the parameters or the statement itself: no Python-side
  column defaults to fill in, no expanding (IN) or literal-rendered parameters.

The values and rows are converted by the same type converters SQLAlchemy uses, so a
statement gives the same result either way (tests/db/test_direct.py runs both on
SQLite and PostgreSQL).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Connection, Dialect, Result
from sqlalchemy.engine.result import IteratorResult, SimpleResultMetaData
from sqlalchemy.sql.elements import ClauseElement
from sqlmodel.sql.expression import SelectOfScalar

from app.db.inline import InlineConnection, is_busy

# Plans kept: the live commands use a few dozen statements; the bound keeps a caller
# that builds statements per call from growing this without end.
PLANS_KEPT = 512

Converter = Callable[[Any], Any] | None


@dataclass(frozen=True, slots=True)
class Plan:
    sql: str
    names: tuple[str, ...]  # the parameters, in the order the SQL text takes them
    binds: tuple[Converter, ...]  # each one's converter to the driver's value
    fixed: Mapping[str, Any]  # values the statement binds itself (e.g. `seq + 1`)
    keys: tuple[str, ...]  # the result's columns
    results: tuple[Converter, ...]  # each column's converter from the driver's value
    scalars: bool  # a SQLModel select of one column: the result is its values
    converts: bool  # whether any result column has a converter
    metadata: SimpleResultMetaData  # the result's columns, built once

    def values(self, params: Mapping[str, Any]) -> tuple[Any, ...]:
        fixed = self.fixed
        out = []
        for name, convert in zip(self.names, self.binds, strict=True):
            value = params[name] if name in params else fixed[name]
            out.append(value if convert is None else convert(value))
        return tuple(out)

    def rows(self, raw: Sequence[Any]) -> list[tuple[Any, ...]]:
        if not self.converts:
            return [tuple(row) for row in raw]
        converters = self.results
        return [
            tuple(
                value if convert is None else convert(value)
                for value, convert in zip(row, converters, strict=True)
            )
            for row in raw
        ]


_PLANS: OrderedDict[tuple[int, str, frozenset[str]], tuple[ClauseElement, Plan | None]] = (
    OrderedDict()
)


def plan_for(statement: Any, params: Mapping[str, Any], dialect: Dialect) -> Plan | None:
    """The statement's plan for these parameter names on this dialect, or None."""
    if not isinstance(statement, ClauseElement):
        return None
    key = (id(statement), dialect.name, frozenset(params))
    found = _PLANS.get(key)
    # Compare the statement too: an id can be reused once a statement is gone.
    if found is not None and found[0] is statement:
        _PLANS.move_to_end(key)
        return found[1]
    plan = _make_plan(statement, params, dialect)
    _PLANS[key] = (statement, plan)
    if len(_PLANS) > PLANS_KEPT:
        _PLANS.popitem(last=False)
    return plan


def _make_plan(statement: Any, params: Mapping[str, Any], dialect: Dialect) -> Plan | None:
    if statement._propagate_attrs.get("compile_state_plugin") == "orm":
        return None  # loads ORM entities
    compiled: Any = statement.compile(dialect=dialect, column_keys=sorted(params))
    if not compiled.positional or compiled.insert_prefetch or compiled.update_prefetch:
        return None  # a named paramstyle, or Python-side column defaults
    if compiled.literal_execute_params or compiled.post_compile_params:
        return None
    names = tuple(compiled.positiontup)
    fixed = {
        name: bind.value
        for bind, name in compiled.bind_names.items()
        if name in names and name not in params
    }
    if any(name not in params and name not in fixed for name in names):
        return None
    processors = compiled._bind_processors
    columns = compiled._result_columns
    results = tuple(column.type._cached_result_processor(dialect, None) for column in columns)
    keys = tuple(column.keyname for column in columns)
    return Plan(
        sql=compiled.string,
        names=names,
        binds=tuple(processors.get(name) for name in names),
        fixed=fixed,
        keys=keys,
        results=results,
        scalars=isinstance(statement, SelectOfScalar),
        converts=any(results),
        metadata=SimpleResultMetaData(keys),
    )


def run(connection: Connection, plan: Plan, params: Mapping[str, Any]) -> Result[Any]:
    """Run a plan on `connection`'s cursor, in its transaction."""
    values = plan.values(params)
    # Listeners see it as any statement (tests count statements this way).
    connection.dispatch.before_cursor_execute(connection, None, plan.sql, values, None, False)
    raw = _run_inline(connection, plan, values)
    if raw is None:
        raw = _run_on_cursor(connection, plan, values)
    return result_of(plan, raw)


def run_on_sqlite(connection: sqlite3.Connection, plan: Plan, values: Sequence[Any]) -> Result[Any]:
    """Run a plan with its values (`Plan.values`) on a bare sqlite3 connection
    (`app.services.live.lane`). The driver's errors are raised as they are."""
    cursor = connection.cursor()
    try:
        raw = _fetch(cursor, plan.sql, values)
    finally:
        cursor.close()
    return result_of(plan, raw)


def _fetch(cursor: Any, sql: str, values: Sequence[Any]) -> Sequence[Any]:
    cursor.execute(sql, values)
    rows: Sequence[Any] = cursor.fetchall() if cursor.description is not None else []
    return rows


def result_of(plan: Plan, raw: Sequence[Any]) -> Result[Any]:
    """A plan's rows as its result (also for rows fetched elsewhere: the PostgreSQL lane)."""
    result: Result[Any] = IteratorResult(plan.metadata, iter(plan.rows(raw)))
    return result.scalars() if plan.scalars else result  # type: ignore[return-value]


def _run_on_cursor(connection: Connection, plan: Plan, values: Sequence[Any]) -> Sequence[Any]:
    cursor = connection.connection.cursor()
    try:
        raw = _fetch(cursor, plan.sql, values)
    except Exception as exc:
        # As SQLAlchemy's own execution does: the driver's error becomes its
        # IntegrityError, OperationalError... and a lost connection is invalidated.
        connection._handle_dbapi_exception(exc, plan.sql, values, cursor, None)
    finally:
        with contextlib.suppress(Exception):  # never in place of the error above
            cursor.close()
    return raw


def _run_inline(connection: Connection, plan: Plan, values: Sequence[Any]) -> Sequence[Any] | None:
    """On a live SQLite connection (`app.db.inline`): straight on its sqlite3 cursor.

    The adapter's cursor would make four calls through aiosqlite for the statement
    (cursor, execute, fetch, close), each a switch to the loop's greenlet and back,
    although an inline call completes at once. The same sqlite3 connection runs it
    here, in the same transaction. None when the connection is another kind, or when
    SQLite is busy (a write lock held elsewhere): the caller then runs it on the
    adapter's cursor, which waits for the lock without blocking the loop.
    """
    driver = connection.connection.driver_connection
    if type(driver) is not InlineConnection:
        return None
    cursor = driver._conn.cursor()
    try:
        raw = _fetch(cursor, plan.sql, values)
    except Exception as exc:
        if isinstance(exc, sqlite3.OperationalError) and is_busy(exc):
            return None  # nothing was done: run again on the waiting path
        connection._handle_dbapi_exception(exc, plan.sql, values, None, None)
    finally:
        cursor.close()
    return raw
