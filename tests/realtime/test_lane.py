"""The lane (app/services/live/lane.py): the frequent commands on SQLite (participants'
and the facilitator's) and drag checks run on a bare sqlite3 connection; anything it
cannot do goes the usual way, with nothing written twice or half.

Behaviour (events, results, refusals) is covered by every other live test, which on
SQLite now runs these commands on the lane; here: that they do, and the fallbacks.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import make_url
from sqlalchemy.exc import IntegrityError

from app.db.models import Event
from app.realtime.messages import parse_command
from app.services.events import INSERT_EVENT
from app.services.live.context import Actor, Handler, Rejected
from app.services.live.engine import HANDLERS, LANE_COMMANDS, LiveService
from app.services.live.lane import Lane, LaneSession, NeedsOrm
from app.services.live.participation import _NOTE_TO_MOVE
from tests.realtime.conftest import Client, Server, Workshop

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

CARD = "measurement-feedback-channel"


def _lane(server: Server) -> Lane:
    lane = server.app.state.live._lane
    assert isinstance(lane, Lane)
    return lane


def _database(server: Server) -> str:
    return str(make_url(server.settings.database_url).database)


def _stored(server: Server, workshop: Workshop) -> tuple[int, list[int]]:
    """The workshop's seq and its events' seqs, read with a connection of the test's."""
    with sqlite3.connect(_database(server)) as db:
        (seq,) = db.execute("SELECT seq FROM workshop WHERE id = ?", (workshop.id,)).fetchone()
        rows = db.execute(
            "SELECT seq FROM event WHERE workshop_id = ? ORDER BY seq", (workshop.id,)
        ).fetchall()
    return int(seq), [int(r[0]) for r in rows]


async def _started(workshop: Workshop) -> tuple[Client, Client]:
    """The facilitator and Ann in a started workshop."""
    fac = await workshop.facilitator()
    _pid, ann = await workshop.participant("Ann")
    await fac.do("workshop.start")
    return fac, ann


async def _board(workshop: Workshop) -> tuple[Client, Client, str]:
    """A started workshop on its reflection board, with one note of Ann's."""
    fac, ann = await _started(workshop)
    await fac.do("phase.goto", index=3)
    await fac.do("phase.next")
    reply = await ann.do("note.create", area="how", text="Weekly review")
    return fac, ann, str(reply["result"]["note_id"])


async def test_participants_frequent_commands_run_on_the_lane(
    server: Server, workshop: Workshop
) -> None:
    lane = _lane(server)
    fac, ann = await _started(workshop)
    before = lane.commits
    await ann.do("card.vote", card_id=CARD, choice="do")
    assert lane.commits == before + 1
    await fac.do("phase.goto", index=3)  # a level vote: its round is an ORM row
    assert lane.commits == before + 1
    await fac.do("phase.next")  # the facilitator's, on the lane
    reply = await ann.do("note.create", area="how", text="Weekly review")
    note_id = reply["result"]["note_id"]
    await ann.do("note.move", note_id=note_id, x=0.4, y=0.6)
    await ann.do("note.edit", note_id=note_id, text="Weekly review, in writing")  # usual way
    assert lane.commits == before + 4
    await fac.do("phase.next")
    await ann.do("dot.add", note_id=note_id)
    await ann.do("dot.remove", note_id=note_id)
    assert lane.commits == before + 7
    assert lane.orm_types == set()
    assert {"card.vote", "note.create", "note.move", "dot.add", "dot.remove"} == LANE_COMMANDS
    seq, events = _stored(server, workshop)
    assert events == list(range(1, seq + 1))  # every number used once, none lost


def _workshop_row(server: Server, workshop: Workshop) -> dict[str, Any]:
    with sqlite3.connect(_database(server)) as db:
        db.row_factory = sqlite3.Row
        row = db.execute("SELECT * FROM workshop WHERE id = ?", (workshop.id,)).fetchone()
    return dict(row)


async def test_the_facilitators_commands_save_the_workshop_row_on_the_lane(
    server: Server, workshop: Workshop
) -> None:
    lane = _lane(server)
    fac = await workshop.facilitator()
    before = lane.commits
    await fac.do("workshop.start")
    await fac.do("timer.start", seconds=120)
    await fac.do("input.lock")
    await fac.do("votes.reveal")  # cards, counted by one plan
    assert lane.commits == before + 4
    row = _workshop_row(server, workshop)
    assert (row["state"], row["current_phase"], row["input_locked"]) == ("running", 1, 1)
    assert row["started_at"] is not None and row["timer_ends_at"] is not None
    assert json.loads(row["revealed"]) == ["cards:measurement"]
    # A level vote's round is an ORM row: these go the usual way, each time, and
    # the next command that is all plans is on the lane again.
    await fac.do("phase.goto", index=3)
    await fac.do("votes.reveal")
    assert lane.commits == before + 4
    await fac.do("phase.next")
    assert lane.commits == before + 5
    assert lane.orm_types == set()
    row = _workshop_row(server, workshop)
    assert row["current_phase"] == 4 and row["timer_ends_at"] is None
    assert json.loads(row["revealed"]) == ["cards:measurement", "level:measurement:1"]
    seq, events = _stored(server, workshop)
    assert seq == row["seq"] and events == list(range(1, seq + 1))


async def test_a_refused_command_on_the_lane_leaves_nothing(
    server: Server, workshop: Workshop
) -> None:
    lane = _lane(server)
    _fac, ann = await _started(workshop)
    before = _stored(server, workshop)
    error = await ann.refused("card.vote", card_id="no-such-card", choice="do")
    assert error["code"] == "unknown_card"
    assert _stored(server, workshop) == before  # its number given back, no event
    assert lane._connection is not None  # it ran on the lane
    assert not lane._connection.in_transaction
    await ann.do("card.vote", card_id=CARD, choice="do")
    seq, events = _stored(server, workshop)
    assert seq == before[0] + 1 and events[-1] == seq


async def test_a_write_lock_held_elsewhere_is_waited_for_on_the_usual_path(
    server: Server, workshop: Workshop
) -> None:
    lane = _lane(server)
    _fac, ann = await _started(workshop)
    before = lane.commits
    other = sqlite3.connect(_database(server), isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another writer holds the lock
        cid = await ann.send("card.vote", card_id=CARD, choice="do")
        await asyncio.sleep(0.2)
        assert not [m for m in ann.received if m.get("cid") == cid]  # still waiting
        other.execute("ROLLBACK")
        reply = await ann.reply(cid)
    finally:
        other.close()
    assert reply["type"] == "ack", reply
    assert lane.commits == before  # not on the lane: BEGIN IMMEDIATE found it busy
    seq, events = _stored(server, workshop)
    assert events == list(range(1, seq + 1))


async def test_drag_previews_are_checked_on_the_lane_without_the_write_lock(
    server: Server, workshop: Workshop
) -> None:
    lane = _lane(server)
    live: LiveService = server.app.state.live
    fac = await workshop.facilitator()
    pid, ann = await workshop.participant("Ann")
    await fac.do("workshop.start")
    await fac.do("phase.goto", index=4)  # a reflection board
    reply = await ann.do("note.create", area="how", text="Weekly review")
    note_id = reply["result"]["note_id"]
    commits, reads = lane.commits, lane.reads
    actor = Actor("participant", workshop.id, participant_id=pid)
    other = sqlite3.connect(_database(server), isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # a writer elsewhere: a read needs no lock
        # Straight to the engine: the socket's gate admits most drags without it.
        drag = {"type": "note.drag", "cid": "d1", "note_id": note_id, "x": 0.3, "y": 0.3}
        outcome = await live.handle(actor, parse_command(drag))
        with pytest.raises(Rejected) as refused:
            await live.handle(actor, parse_command({**drag, "note_id": "no-such-note"}))
    finally:
        other.close()
    assert outcome.events == [] and refused.value.code == "unknown_note"
    assert (lane.commits, lane.reads) == (commits, reads + 2)
    assert lane._connection is not None and not lane._connection.in_transaction
    assert lane.orm_types == set()
    seen = await ann.until(lambda msg: msg.get("type") == "note.dragging")
    assert (seen["note_id"], seen["x"], seen["cid"]) == (note_id, 0.3, "d1")


async def test_a_handler_that_needs_the_orm_is_rolled_back_and_run_the_usual_way(
    server: Server, workshop: Workshop, monkeypatch: pytest.MonkeyPatch
) -> None:
    lane = _lane(server)
    _fac, ann, note_id = await _board(workshop)
    move: Handler = HANDLERS["note.move"]
    calls: list[str] = []

    async def move_then_orm(ctx: Any, cmd: Any) -> None:
        await move(ctx, cmd)  # its statements run (on the lane: later rolled back)
        calls.append(type(ctx.session).__name__)
        await ctx.session.flush()  # an ORM call: the lane cannot

    monkeypatch.setitem(HANDLERS, "note.move", move_then_orm)
    before = lane.commits
    seq_before, _ = _stored(server, workshop)
    await ann.do("note.move", note_id=note_id, x=0.25, y=0.75)
    assert calls == ["LaneSession", "AtOnceSession"]
    assert lane.commits == before
    assert lane.orm_types == {"note.move"}
    seq, events = _stored(server, workshop)
    assert seq == seq_before + 1  # one number, not two: the lane's was rolled back
    assert events == list(range(1, seq + 1))
    moved = [m for m in ann.received if m.get("type") == "note.moved"]
    assert len(moved) == 1 and moved[0]["seq"] == seq
    calls.clear()
    await ann.do("note.move", note_id=note_id, x=0.5, y=0.5)
    assert calls == ["AtOnceSession"]  # remembered: straight to the usual path


async def test_the_drivers_errors_are_sqlalchemys_and_the_rollback_keeps_nothing(
    server: Server, workshop: Workshop
) -> None:
    lane = _lane(server)
    _fac, _ann, note_id = await _board(workshop)
    seq, events = _stored(server, workshop)
    session = lane.begin()
    assert isinstance(session, LaneSession)
    found = (await session.exec(_NOTE_TO_MOVE, params={"note_id": note_id})).first()
    assert found is not None and found.area == "how"
    params = {
        "workshop_id": workshop.id,
        "seq": events[-1],  # taken
        "type": "note.moved",
        "payload": {},
        "actor": None,
        "created_at": datetime.now(UTC),
    }
    with pytest.raises(IntegrityError):
        await session.exec(INSERT_EVENT, params=params)
    with pytest.raises(NeedsOrm):
        await session.get(Event, 1)
    lane.rollback()
    assert _stored(server, workshop) == (seq, events)


async def test_shutdown_closes_the_lanes_connection(settings: Any) -> None:
    from app.main import create_app

    app = create_app(settings)
    async with app.router.lifespan_context(app):
        lane = app.state.live._lane
        assert isinstance(lane, Lane)
        assert lane.begin() is not None
        lane.rollback()
        assert lane._connection is not None
    assert lane._connection is None
