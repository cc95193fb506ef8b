"""A facilitator's command on PostgreSQL as a read and one write, on the lane.

The usual path (`LiveService._transaction`) runs a facilitator's command as five or
six round trips in one transaction: `BEGIN` with the workshop row and its next seq,
the handler's reads, the event's `INSERT`, the row's `UPDATE`, `COMMIT`. The row
lock is held from the second to the last, so participants' calls of that workshop
wait behind it, and in a busy room each round trip hands the command back to a
loop that is fanning out. Starting the workshop, revealing votes and changing phase
were the slowest events on PostgreSQL (docs/benchmarks.md, change 44).

Here the command runs optimistically on the lane's connections (`PgLane`), outside
any transaction:

1. the workshop row is read (`WORKSHOP`, with its seq), and the handler runs on it
   as it would on the usual path: the same code, on a `WorkshopRow`, its reads (a
   reveal's vote counts) sent to the lane one by one;
2. what it did, the row's changed columns and its one event, is written by one
   call of `live_facilitate` (migration a4c9e2f1b7d3), which numbers the event with
   the workshop's next seq and writes only if the row's columns (all but the seq)
   are still the ones read. Participants' commands change only the seq, so a busy
   room does not stand in the way. A command that read more than the row (a reveal
   counts votes) is written only if the seq is still the one read too: no command
   of the workshop was committed in between, so every read saw the workshop as it
   is now (every write to a workshop's rows comes with an event, which bumps its
   seq).

Anything else runs the usual way, with nothing written: a handler that refuses (the
usual path says why, from the row as it is then), one that needs the ORM or more
than one event (`NeedsOrm`), a row (or for a reveal, a seq) that changed since the
read, a lane that cannot read. A failure
during the write itself may or may not have committed it: that is raised as
`LaneUnavailable`, and the engine answers `try_again`, as for the participants'
calls. tests/realtime/test_pg_lane.py runs the same script with and without the
lane and compares replies, events and rows; tests/realtime/test_pg_facilitation.py
covers the rest.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any, cast

import asyncpg
from sqlalchemy.engine import Dialect
from sqlmodel.ext.asyncio.session import AsyncSession

from app.db import direct
from app.db.models import Workshop
from app.domain.definitions import Definition, Phase
from app.services.events import INSERT_EVENT
from app.services.live.context import Actor, Ctx, Handler, Rejected, utcnow
from app.services.live.lane import NeedsOrm
from app.services.live.pg_lane import FACILITATE, WORKSHOP, PgLane
from app.services.live.workshop_row import COLUMNS, WorkshopRow

# The columns `live_facilitate` can write (migration a4c9e2f1b7d3's list).
WRITABLE = frozenset(COLUMNS) - {"id", "seq"}


class LaneReads:
    """The `AsyncSession` methods a facilitator's handler uses, for a run on the lane:
    reads that are plans go to the lane one by one; the event's `INSERT` is kept for
    the write (`events`); anything else raises `NeedsOrm`."""

    __slots__ = ("_dialect", "_lane", "events", "reads")

    def __init__(self, lane: PgLane, dialect: Dialect) -> None:
        self._lane = lane
        self._dialect = dialect
        self.events: list[dict[str, Any]] = []  # `append_event`'s parameters
        self.reads = 0  # statements read besides the workshop row

    async def exec(
        self, statement: Any, *, params: dict[str, Any] | None = None, **kwargs: Any
    ) -> Any:
        if params is None or kwargs:
            raise NeedsOrm
        if statement is INSERT_EVENT:
            self.events.append(params)
            return None
        plan = direct.plan_for(statement, params, self._dialect)
        if plan is None or not plan.sql.startswith("SELECT"):
            raise NeedsOrm
        self.reads += 1
        rows = await self._lane.fetch(plan.sql, plan.values(params))
        if rows is None:
            raise NeedsOrm  # not read: the usual path reads it
        return direct.result_of(plan, rows)

    async def _orm(self, *_args: Any, **_kwargs: Any) -> Any:
        raise NeedsOrm

    execute = get = delete = flush = _orm

    def add(self, _instance: Any) -> None:
        raise NeedsOrm


def _json(value: Any) -> str:
    def plain(item: Any) -> Any:
        if isinstance(item, datetime | date):
            return item.isoformat()
        raise TypeError(f"{type(item).__name__} is not JSON")

    return json.dumps(value, default=plain, separators=(",", ":"))


async def facilitate(
    lane: PgLane,
    dialect: Dialect,
    actor: Actor,
    command: Any,
    handler: Handler,
    definition: tuple[Definition, tuple[Phase, ...]],
) -> Ctx | None:
    """Run a facilitator's `command` on the lane (see the module's docstring); None:
    not done here, nothing was written. Raises `LaneUnavailable` when the write may
    or may not have been committed."""
    if not lane.enabled:
        return None
    rows = await lane.fetch(WORKSHOP, (actor.workshop_id,))
    if not rows or rows[0]["state"] == "ended":
        return None  # not read, or the usual path says so
    found = rows[0]
    seq = found["seq"] + 1
    values = [seq if name == "seq" else value for name, value in zip(COLUMNS, found, strict=True)]
    workshop = WorkshopRow(values)
    reads = LaneReads(lane, dialect)
    ctx = Ctx(
        session=cast(AsyncSession, reads),
        workshop=cast(Workshop, workshop),
        definition=definition[0],
        phases=definition[1],
        actor=actor,
        now=utcnow(),
        cid=command.cid,
        ts=command.ts,
        reserved_seq=seq,
    )
    try:
        await handler(ctx, command)
    except (Rejected, NeedsOrm):
        return None
    changes = workshop.changes()
    if len(reads.events) != 1 or len(ctx.events) != 1 or not changes.keys() <= WRITABLE:
        return None
    event = reads.events[0]
    if event["seq"] != seq:
        return None
    expected = {name: found[name] for name in WRITABLE}
    args = (
        actor.workshop_id,
        seq if reads.reads else None,  # the seq read must still be the workshop's
        _json(expected),
        _json(changes),
        event["type"],
        _json(event["payload"]),
        event["created_at"],
        event["actor"],
    )
    row: asyncpg.Record | None = await lane.write(FACILITATE, args)
    if row is None:
        return None
    # The number the event got: later than the one read if participants' commands
    # were committed in between.
    ctx.events[0]["seq"] = row["o_seq"]
    lane.facilitated += 1
    return ctx
