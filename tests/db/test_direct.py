"""Plans (app.db.direct) give what SQLAlchemy's own execution gives, on both databases."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, bindparam, insert, update
from sqlalchemy.dialects.sqlite.aiosqlite import AsyncAdapt_aiosqlite_cursor
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select

from app.db import direct
from app.db.engine import make_engine, make_live_engine, make_sessionmaker
from app.db.models import Event, Facilitator, Workshop, table_of
from app.services.events import INSERT_EVENT
from app.services.live.engine import _CONTEXT
from app.services.live.workshop_row import WorkshopRow

_WORKSHOP = table_of(Workshop)
_SEQ_OF = select(_WORKSHOP.c.seq).where(_WORKSHOP.c.id == bindparam("wid"))


async def _workshop(db_url: str) -> str:
    maker = make_sessionmaker(engine := make_engine(db_url))
    try:
        async with maker() as session:
            email = f"d{uuid.uuid4().hex[:8]}@x.gov"
            fac = Facilitator(email=email, display_name="F", password_hash="x")
            session.add(fac)
            await session.flush()
            workshop = Workshop(
                facilitator_id=fac.id,
                title="T",
                definition_id="d",
                definition={},
                join_code=email[1:7].upper(),
                state="running",
                revealed=["cards:a"],
                phase_budgets={"p": 2},
            )
            session.add(workshop)
            await session.commit()
            return workshop.id
    finally:
        await engine.dispose()


def _both(conn: Connection, statement: Any, params: dict[str, Any]) -> tuple[Any, Any]:
    """The statement's rows through a plan, then through SQLAlchemy (in that order)."""
    plan = direct.plan_for(statement, params, conn.dialect)
    assert plan is not None
    planned = [tuple(row) for row in direct.run(conn, plan, params).all()]
    usual = [tuple(row) for row in conn.execute(statement, params).all()]
    return planned, usual


async def test_plans_read_and_write_as_sqlalchemy_does(db_url: str) -> None:
    engine = make_engine(db_url)
    # On SQLite, the live commands' engine too: there plans run on sqlite3's own cursor.
    engines = [engine, live] if (live := make_live_engine(engine)) is not engine else [engine]
    try:
        for each in engines:
            await _read_and_write_both_ways(each, await _workshop(db_url))
    finally:
        for each in engines:
            await each.dispose()


async def _read_and_write_both_ways(engine: AsyncEngine, wid: str) -> None:
    async with engine.begin() as conn:

        def check(sync: Connection) -> None:
            # The participants' context: an UPDATE ... RETURNING with booleans, JSON
            # lists and dicts, and an EXISTS; the two runs bump seq 0 -> 1 -> 2.
            params = {"ctx_wid": wid, "ctx_pid": "nobody"}
            planned, usual = _both(sync, _CONTEXT[True, False], params)
            assert [row[:-1] for row in planned] == [
                (wid, "running", 0, 1, False, ["cards:a"], 3, {"p": 2})
            ]
            assert planned[0][-1] in (False, 0)  # no such participant
            assert [row[3] for row in usual] == [2]
            assert [row[:3] + row[4:] for row in usual] == [row[:3] + row[4:] for row in planned]
            # A SQLModel select of one column gives its values, as `Session.exec`.
            plan = direct.plan_for(_SEQ_OF, {"wid": wid}, sync.dialect)
            assert plan is not None and plan.scalars
            assert list(direct.run(sync, plan, {"wid": wid})) == [2]
            # An INSERT with JSON and an aware datetime, read back both ways.
            at = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
            event = {
                "workshop_id": wid,
                "seq": 3,
                "type": "t.done",
                "payload": {"text": "Ünïcode ✓", "n": [1, 2]},
                "actor": None,
                "created_at": at,
            }
            plan = direct.plan_for(INSERT_EVENT, event, sync.dialect)
            assert plan is not None
            direct.run(sync, plan, event)
            stored = select(Event.payload, Event.created_at, Event.actor).where(
                col(Event.workshop_id) == wid
            )
            assert [tuple(r) for r in sync.execute(stored)] == [(event["payload"], at, None)]
            _facilitators_row_both_ways(sync, wid, at)
            # A driver's error comes out as SQLAlchemy's, as from its own execution
            # (the engine turns IntegrityError into a "conflict" for the sender).
            with pytest.raises(IntegrityError):
                direct.run(sync, plan, event)  # the same (workshop, seq) again

        await conn.run_sync(check)


def _facilitators_row_both_ways(sync: Connection, wid: str, at: datetime) -> None:
    """The facilitator's context and the save of its changes (workshop_row.py)."""
    params = {"ctx_wid": wid, "ctx_pid": None}
    planned, usual = _both(sync, _CONTEXT[False, True], params)
    assert planned == usual and len(planned) == 1
    assert WorkshopRow(planned[0]).save() is None  # nothing changed: nothing to save
    row = WorkshopRow(planned[0])
    assert (getattr(row, "seq"), getattr(row, "revealed")) == (2, ["cards:a"])  # noqa: B009
    getattr(row, "revealed").append("cards:b")  # noqa: B009 - changed in place
    setattr(row, "timer_ends_at", at)  # noqa: B010
    setattr(row, "phase_budgets", {"p": 2})  # noqa: B010 - an equal value: no change
    changes = row.changes()
    assert changes == {"revealed": ["cards:a", "cards:b"], "timer_ends_at": at}
    save = row.save()
    assert save is not None
    statement, values = save
    plan = direct.plan_for(statement, values, sync.dialect)
    assert plan is not None
    direct.run(sync, plan, values)
    stored = select(_WORKSHOP.c.revealed, _WORKSHOP.c.timer_ends_at, _WORKSHOP.c.phase_budgets)
    assert tuple(sync.execute(stored.where(_WORKSHOP.c.id == wid)).one()) == (
        ["cards:a", "cards:b"],
        at,
        {"p": 2},
    )


async def test_statements_that_need_sqlalchemy_get_no_plan(db_url: str) -> None:
    engine = make_engine(db_url)
    table = Table(
        "defaults",
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("name", String, default=lambda: "filled in by SQLAlchemy"),
    )
    try:
        async with engine.connect() as conn:
            dialect = conn.dialect
        # ORM entities to load.
        assert direct.plan_for(select(Workshop), {}, dialect) is None
        # A Python-side column default to fill in.
        assert direct.plan_for(insert(table), {"id": 1}, dialect) is None
        assert direct.plan_for(insert(table), {"id": 1, "name": "given"}, dialect) is not None
        # An expanding IN parameter.
        expanding = select(_WORKSHOP.c.id).where(
            _WORKSHOP.c.id.in_(bindparam("ids", expanding=True))
        )
        assert direct.plan_for(expanding, {"ids": ["a"]}, dialect) is None
        # Not a statement at all.
        assert direct.plan_for("SELECT 1", {}, dialect) is None
        # A statement's own values are bound with the caller's.
        bump = update(_WORKSHOP).values(seq=_WORKSHOP.c.seq + 5)
        plan = direct.plan_for(bump.where(_WORKSHOP.c.id == bindparam("w")), {"w": "x"}, dialect)
        assert plan is not None and 5 in plan.values({"w": "x"})
    finally:
        await engine.dispose()


async def test_on_the_live_sqlite_engine_plans_skip_the_adapter_and_wait_out_a_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'direct.db'}"
    engine = make_engine(url)
    live = make_live_engine(engine)
    table = Table("t", MetaData(), Column("id", Integer, primary_key=True), Column("v", Integer))
    bump = (
        update(table)
        .where(table.c.id == bindparam("tid"))
        .values(v=table.c.v + 1)
        .returning(table.c.v)
    )
    adapter_runs: list[str] = []
    execute = AsyncAdapt_aiosqlite_cursor.execute

    def counted(self: Any, operation: Any, parameters: Any = None) -> Any:
        adapter_runs.append(str(operation))
        return execute(self, operation, parameters)

    monkeypatch.setattr(AsyncAdapt_aiosqlite_cursor, "execute", counted)

    def bump_once(sync: Connection) -> int:
        plan = direct.plan_for(bump, {"tid": 1}, sync.dialect)
        assert plan is not None
        return int(direct.run(sync, plan, {"tid": 1}).scalar_one())

    try:
        async with engine.begin() as conn:
            await conn.run_sync(table.create)
            await conn.execute(insert(table).values(id=1, v=0))
        async with live.begin() as conn:
            assert await conn.run_sync(bump_once) == 1
        assert not [run for run in adapter_runs if "UPDATE t" in run], "on sqlite3's cursor"

        # A write lock held by the threaded engine: the plan waits for it on the
        # adapter's path (the loop keeps running) and then runs once.
        async with engine.begin() as holder:
            await holder.execute(update(table).values(v=table.c.v + 10))

            async def live_bump() -> int:
                async with live.begin() as conn:
                    return await conn.run_sync(bump_once)

            waiting = asyncio.create_task(live_bump())
            await asyncio.sleep(0.2)
            assert not waiting.done()
        assert await asyncio.wait_for(waiting, 5) == 12
        assert [run for run in adapter_runs if "UPDATE t" in run], "on the adapter's path"
    finally:
        await live.dispose()
        await engine.dispose()
