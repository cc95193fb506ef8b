"""PostgreSQL drops the app's connections; commands say "try again", nothing is half-written.

The server runs in the test's event loop on a scratch database. Its connections are
cut with `pg_terminate_backend` (only backends of that database, never the test's own),
as a PostgreSQL restart or a failover would:

* **between commands**: the next command still succeeds (the pool notices the dead
  connection when it checks it out and opens a new one);
* **in flight**: the test holds the workshop row locked from its own connection, so a
  command stops inside its transaction, waiting to number its event; its connection is
  cut there. On the usual path (an edit) the sender gets `try_again`, the socket stays
  open, the note is as it was and the event log has no hole; once the lock is gone the
  next command succeeds, with no restart. On the lane (a new note) the server's
  shutdown message says the call was not committed (`pg_lane.shut_down_unanswered`):
  the command goes the usual way, waits for the lock like any other, and is stored
  once, numbered next;
* **over HTTP**: a join cut the same way gets 503 `try_again` with `Retry-After`, and
  no participant; the retried join works.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import pytest
from sqlmodel import col, select

from app.db.engine import make_engine, make_sessionmaker
from app.db.models import Event, Note, Participant
from app.db.models import Workshop as WorkshopRow
from tests.faults.conftest import Stream, wait_until
from tests.realtime.conftest import Server, Workshop, new_workshop

pytestmark = pytest.mark.postgres
REFLECT = 4


def _dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def terminate_app_backends(url: str) -> int:
    """Cut every connection to the scratch database except this one; returns how many."""
    conn = await asyncpg.connect(_dsn(url))
    try:
        rows = await conn.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await conn.close()
    return len(rows)


@asynccontextmanager
async def workshop_row_locked(url: str, workshop_id: str) -> AsyncIterator[asyncpg.Connection]:
    """Hold the workshop row, as a slow writer would: commands wait to number events."""
    conn = await asyncpg.connect(_dsn(url))
    try:
        tx = conn.transaction()
        await tx.start()
        await conn.execute("SELECT 1 FROM workshop WHERE id = $1 FOR UPDATE", workshop_id)
        try:
            yield conn
        finally:
            await tx.rollback()
    finally:
        await conn.close()


async def cut_blocked_backends(holder: asyncpg.Connection) -> None:
    """Wait until an app backend waits on the lock, then cut every app backend."""
    for _ in range(250):
        # Activity statistics are a snapshot per transaction: take a fresh one.
        await holder.execute("SELECT pg_stat_clear_snapshot()")
        waiting = await holder.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
        )
        if waiting:
            break
        await asyncio.sleep(0.02)
    else:
        raise AssertionError("no command reached the lock")
    await holder.fetch(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )


async def _state(url: str, workshop_id: str) -> tuple[int, list[int], list[str], int]:
    engine = make_engine(url)
    async with make_sessionmaker(engine)() as session:
        workshop = await session.get(WorkshopRow, workshop_id)
        assert workshop is not None
        seqs = list(
            (
                await session.exec(
                    select(Event.seq)
                    .where(Event.workshop_id == workshop_id)
                    .order_by(col(Event.seq))
                )
            ).all()
        )
        notes = [
            n.text
            for n in (await session.exec(select(Note).where(Note.workshop_id == workshop_id))).all()
        ]
        people = len(
            (
                await session.exec(
                    select(Participant).where(Participant.workshop_id == workshop_id)
                )
            ).all()
        )
    await engine.dispose()
    return workshop.seq, seqs, notes, people


async def room_in_reflect(server: Server, email: str) -> tuple[Workshop, Stream, Stream]:
    """A started workshop in its reflect phase, with the facilitator's and Ann's streams."""
    workshop = await new_workshop(server, email)
    fac = await Stream.open(server.base, workshop.id, workshop.facilitator_token, "fac")
    _pid, token = await workshop.join("Ann")
    ann = await Stream.open(server.base, workshop.id, token, "Ann")
    await fac.do("workshop.start")
    await fac.do("phase.goto", index=REFLECT)
    return workshop, fac, ann


async def _reply(stream: Stream, cid: str) -> dict:
    return await stream.wait(lambda m: m.get("cid") == cid and m["type"] in ("ack", "error"))


async def test_connections_dropped_between_and_during_commands(inloop: Server) -> None:
    url = inloop.settings.database_url
    workshop, fac, ann = await room_in_reflect(inloop, "pgdrop@agency.gov")

    # Between commands: every pooled connection is dead; the next command works.
    assert await terminate_app_backends(url) >= 1
    first = await ann.do("note.create", area="now", text="After the first drop")

    # In flight on the usual path: the edit is inside its transaction when cut.
    async with workshop_row_locked(url, workshop.id) as holder:
        cid = await ann.send("note.edit", note_id=first["result"]["note_id"], text="Cut off")
        await cut_blocked_backends(holder)
        reply = await _reply(ann, cid)
    assert reply["type"] == "error" and reply["code"] == "try_again", reply
    assert "try again" in reply["message"]
    seq, seqs, notes, _people = await _state(url, workshop.id)
    assert seq == first["seq"] and seqs == list(range(1, seq + 1)), "half-written"
    assert notes == ["After the first drop"]

    # The same socket goes on; nothing to restart.
    again = await ann.do("note.create", area="now", text="Retried")
    assert again["seq"] == first["seq"] + 1
    await fac.wait(lambda m: m.get("seq") == again["seq"] and m["type"] == "note.created")
    assert not ann.closed

    # In flight on the lane: shut down before it committed, it goes the usual way.
    lane = inloop.pg_lane
    calls = lane.calls
    async with workshop_row_locked(url, workshop.id) as holder:
        cid = await ann.send("note.create", area="now", text="Cut off on the lane")
        await cut_blocked_backends(holder)
        await asyncio.sleep(0.2)  # the usual path waits for the lock meanwhile
        assert not any(m.get("cid") == cid for m in ann.received)
    reply = await _reply(ann, cid)
    assert reply["type"] == "ack" and reply["seq"] == again["seq"] + 1, reply
    assert lane.calls == calls  # not the lane's
    seq, seqs, notes, _people = await _state(url, workshop.id)
    assert seq == reply["seq"] and seqs == list(range(1, seq + 1))
    assert sorted(notes) == ["After the first drop", "Cut off on the lane", "Retried"]

    # Over HTTP: a join cut mid-transaction is a 503 to retry, and leaves nobody behind.
    url_join = f"/api/workshops/{workshop.id}/participants"
    body = {"join_code": workshop.join_code, "display_name": "Bo"}
    async with workshop_row_locked(url, workshop.id) as holder:
        pending = asyncio.create_task(inloop.http.post(url_join, json=body))
        await cut_blocked_backends(holder)
        refused = await pending
    assert refused.status_code == 503, refused.text
    assert refused.json()["code"] == "try_again"
    assert int(refused.headers["retry-after"]) > 0
    _seq, _seqs, _notes, people = await _state(url, workshop.id)
    assert people == 1
    joined = await inloop.http.post(url_join, json=body)
    assert joined.status_code == 201, joined.text

    seq, seqs, notes, people = await _state(url, workshop.id)
    assert seqs == list(range(1, seq + 1)) and people == 2
    assert sorted(notes) == ["After the first drop", "Cut off on the lane", "Retried"]
    await wait_until(lambda: any(m["seq"] == seq for m in fac.stored()), 10, "the join event")
    fac.assert_in_order()
    ann.assert_in_order()
    await ann.close()
    await fac.close()
