"""The event log: every accepted change gets the next number of its workshop.

`seq` comes from `UPDATE workshop SET seq = seq + 1 ... RETURNING seq` inside the
caller's transaction. The row lock taken by the UPDATE serialises writers on
PostgreSQL, and SQLite's single writer does the same, so numbers never repeat and
never skip (a rolled-back transaction gives its number back). The live engine takes
a command's first number together with the workshop row it reads (one statement,
`app.services.live.engine`) and passes it to `append_event` as `seq`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, update
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from app.db.models import Event, Workshop, table_of
from app.db.types import utcnow

# Built once; a Core INSERT skips the ORM unit of work (one row, nothing to track).
INSERT_EVENT = insert(table_of(Event))


class WorkshopNotFound(LookupError):
    pass


async def next_seq(session: AsyncSession, workshop_id: str) -> int:
    stmt = (
        update(Workshop)
        .where(col(Workshop.id) == workshop_id)
        .values(seq=col(Workshop.seq) + 1)
        .returning(col(Workshop.seq))
    )
    result = await session.exec(stmt)
    seq = result.scalar_one_or_none()
    if seq is None:
        raise WorkshopNotFound(workshop_id)
    return int(seq)


@dataclass(frozen=True, slots=True)
class Appended:
    """What `append_event` wrote: the event's number and time."""

    seq: int
    created_at: datetime


async def append_event(
    session: AsyncSession,
    workshop_id: str,
    type_: str,
    payload: dict[str, Any],
    actor: str | None,
    seq: int | None = None,
) -> Appended:
    """Add a numbered event to the caller's transaction (not committed here).

    `seq`, when given, is a number the caller has already taken from the workshop row
    in this transaction; otherwise the next one is taken here. The row is inserted
    at once (no ORM object: a live command's hot path); `Appended` describes it.
    """
    if seq is None:
        seq = await next_seq(session, workshop_id)
    created_at = utcnow()
    await session.exec(
        INSERT_EVENT,
        params={
            "workshop_id": workshop_id,
            "seq": seq,
            "type": type_,
            "payload": payload,
            "actor": actor,
            "created_at": created_at,
        },
    )
    return Appended(seq, created_at)
