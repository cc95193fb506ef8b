"""The PgLane (app/services/live/pg_lane.py): on PostgreSQL, participants' card votes,
new notes, note moves and dots are one call of a server-side function each, and most
of a facilitator's commands a read and one call (pg_facilitation.py).

The lane only ever accepts: whatever its functions refuse runs the usual way, which
gives the exact reason. Here the same script runs in two workshops, one with the lane
and one without, and the replies, the events the room receives, the log and the rows
must be the same; then the lane's own failures.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import asyncpg
import pytest
import websockets
from sqlalchemy import event as sa_event
from websockets.exceptions import InvalidStatus

from app.realtime.messages import parse_command
from app.services.live.context import Actor, utcnow
from app.services.live.participation import spot
from app.services.live.pg_lane import LaneUnavailable, PgLane, make_pg_lane
from app.services.security import PARTICIPANT, TokenCodec
from tests.realtime.conftest import Client, Server, Workshop, new_workshop

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.parametrize("db_url", ["postgres"], indirect=True),
]

CARD = "measurement-feedback-channel"
OTHER_FUNCTION_CARD = "governance-cx-champion"
LEVEL_VOTE, REFLECT = 3, 4  # phase indexes in the default definition


class Names:
    """Ids that differ between the two workshops (participants', notes'), as names."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}

    def add(self, value: str, name: str) -> None:
        self.names[value] = name

    def __call__(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: self(v) for k, v in value.items() if k not in ("at", "cid", "ts")}
        if isinstance(value, list):
            return [self(v) for v in value]
        if isinstance(value, str):
            if value not in self.names and len(value) == 32 and value.isalnum():
                self.names[value] = f"id{len(self.names)}"  # a note's, in order of birth
            return self.names.get(value, value)
        return value


async def _script(workshop: Workshop) -> tuple[list[Any], Names, Client]:
    """Every command the lane takes, accepted and refused, in one workshop."""
    names = Names()
    seen: list[Any] = []
    fac = await workshop.facilitator()
    people = {}
    for name in ("Ann", "Bob", "Cat", "Dan"):
        pid, client = await workshop.participant(name)
        names.add(pid, name)
        people[name] = client
    ann, bob, cat, dan = people["Ann"], people["Bob"], people["Cat"], people["Dan"]

    async def send(client: Client, type_: str, **fields: Any) -> None:
        reply = await client.reply(await client.send(type_, **fields))
        seen.append((client.name, type_, names(reply)))

    await send(ann, "card.vote", card_id=CARD, choice="do")  # not started
    await fac.do("workshop.start")
    await send(ann, "card.vote", card_id=CARD, choice="do")
    await send(bob, "card.vote", card_id=CARD, choice="dont")
    await send(ann, "card.vote", card_id=CARD, choice="unsure")  # a change
    await send(dan, "card.vote", card_id=CARD, choice="do")
    dan_id = next(pid for pid, name in names.names.items() if name == "Dan")
    await fac.do("participant.remove", participant_id=dan_id)
    await send(bob, "card.vote", card_id=CARD, choice="do")  # Dan's vote counts no more
    await send(ann, "card.vote", card_id="no-such-card", choice="do")
    await send(ann, "card.vote", card_id=OTHER_FUNCTION_CARD, choice="do")
    await fac.do("input.lock")
    await send(cat, "card.vote", card_id=CARD, choice="do")
    await fac.do("input.unlock")
    await fac.do("votes.reveal")
    await send(cat, "card.vote", card_id=CARD, choice="do")
    await fac.do("votes.hide")
    await send(ann, "level.vote", level=1)  # wrong phase
    await fac.do("phase.goto", index=LEVEL_VOTE)
    await send(ann, "level.vote", level=1)
    await send(bob, "level.vote", level=2)
    await send(ann, "level.vote", level=19)  # no such level
    await send(ann, "level.vote", level=2)  # a change
    await fac.do("votes.reveal")
    await send(cat, "level.vote", level=0)
    await send(ann, "note.create", area="how", text="Too early")  # wrong phase
    await fac.do("phase.goto", index=REFLECT)
    await send(ann, "card.vote", card_id=CARD, choice="do")  # wrong phase
    await send(ann, "note.create", area="how", text="  Weekly   review ")
    await send(ann, "note.create", area="how", text="Second spot")
    await send(bob, "note.create", area="how", text="Placed", colour="blue", x=0.25, y=0.75)
    await send(bob, "note.create", area="nowhere", text="Bad area")
    await send(bob, "note.create", area="now", text="Bad colour", colour="plaid")
    await send(bob, "note.create", area="now", text="\u0007")
    notes = [m["note"]["id"] for m in ann.received if m.get("type") == "note.created"]
    await ann.until(lambda m: m.get("type") == "note.created" and m["note"]["text"] == "Placed")
    notes = [m["note"]["id"] for m in ann.received if m.get("type") == "note.created"]
    first, second, placed = notes
    await send(bob, "note.move", note_id=first, x=0.5, y=0.5)
    await send(bob, "note.move", note_id=second, x=0.1, y=0.2, area="now")
    await send(bob, "note.move", note_id=second, x=0.1, y=0.2, area="now")  # same area
    await send(bob, "note.move", note_id="0" * 32, x=0.1, y=0.2)
    await send(bob, "note.move", note_id=first, x=0.1, y=0.2, area="nowhere")
    await fac.do("phase.next")  # prioritise
    await send(bob, "note.move", note_id=first, x=0.3, y=0.3)  # wrong phase
    for _ in range(4):  # the budget is three
        await send(ann, "dot.add", note_id=placed)
    await send(ann, "dot.remove", note_id=placed)
    await send(ann, "dot.remove", note_id=first)  # none there
    await send(ann, "dot.add", note_id=first)
    await send(ann, "dot.remove", note_id=first)
    await send(bob, "dot.add", note_id=placed)
    await send(bob, "dot.add", note_id=first)
    await send(bob, "dot.add", note_id=second)  # in another area now
    await send(bob, "dot.add", note_id="0" * 32)
    await fac.do("dots.set_budget", budget=1)
    await send(cat, "dot.add", note_id=first)
    await send(cat, "dot.add", note_id=first)  # over the changed budget
    await fac.do("workshop.end")
    await send(cat, "dot.add", note_id=first)
    await fac.quiet(0.2)
    seen.append(("room", [names(m) for m in fac.events()]))
    return seen, names, fac


async def _stored(server: Server, workshop: Workshop, names: Names) -> dict[str, Any]:
    connection = await asyncpg.connect(server.pg_dsn)
    try:
        wid = workshop.id
        events = await connection.fetch(
            "SELECT seq, type, payload, actor FROM event WHERE workshop_id = $1 ORDER BY seq", wid
        )
        votes = await connection.fetch(
            "SELECT participant_id, function_id, card_id, choice FROM cardvote"
            " WHERE workshop_id = $1 ORDER BY participant_id, card_id",
            wid,
        )
        notes = await connection.fetch(
            "SELECT id, function_id, area, text, colour, x, y, group_id, author_id,"
            " facilitator_id FROM note WHERE workshop_id = $1 ORDER BY created_at, id",
            wid,
        )
        dots = await connection.fetch(
            "SELECT note_id, participant_id, phase_key FROM dotvote"
            " WHERE workshop_id = $1 ORDER BY id",
            wid,
        )
        seq = await connection.fetchval("SELECT seq FROM workshop WHERE id = $1", wid)
    finally:
        await connection.close()

    def rows(records: list[asyncpg.Record]) -> list[Any]:
        return names([dict(r) for r in records])

    logged = [
        names({**dict(r), "payload": json.loads(r["payload"]), "actor": r["actor"]}) for r in events
    ]
    for event in logged:  # "participant:<id>"
        kind, _, who = str(event["actor"]).partition(":")
        event["actor"] = f"{kind}:{names(who)}" if who else kind
    return {
        "seq": seq,
        "events": logged,
        "votes": sorted(rows(votes), key=str),
        "notes": rows(notes),
        "dots": sorted(rows(dots), key=str),
    }


async def test_with_and_without_the_lane_the_room_and_the_database_are_the_same(
    server: Server, workshop: Workshop
) -> None:
    lane = server.pg_lane
    before, facilitated = lane.calls, lane.facilitated
    with_lane, names_a, _fac = await _script(workshop)
    stored_with = await _stored(server, workshop, names_a)
    on_lane = lane.calls - before
    # The facilitator's commands but removing Dan (never tried on the lane), entering
    # the level vote and revealing it (they need the ORM), see test_pg_facilitation.py.
    assert lane.facilitated - facilitated == 9
    assert lane.enabled

    server.live.pg_lane = None
    try:
        other = await new_workshop(server, email="other@agency.gov")
        without_lane, names_b, _fac = await _script(other)
        stored_without = await _stored(server, other, names_b)
    finally:
        server.live.pg_lane = lane

    # 5 card and 3 level votes, 3 notes, 3 moves, 7 dots added and 2 taken back
    # were accepted; everything else was refused.
    assert on_lane == 23
    assert lane.calls - before == on_lane  # nothing went to the lane while it was off
    assert with_lane == without_lane
    assert stored_with == stored_without
    codes = [reply.get("code") for *_who, reply in with_lane[:-1] if reply["type"] == "error"]
    assert codes == [
        "not_started",
        "unknown_card",
        "wrong_phase",
        "locked",
        "revealed",
        "wrong_phase",
        "unknown_level",
        "revealed",
        "wrong_phase",
        "wrong_phase",
        "unknown_area",
        "unknown_colour",
        "invalid",
        "unknown_note",
        "unknown_area",
        "wrong_phase",
        "no_dots_left",
        "no_dot",
        "wrong_area",
        "unknown_note",
        "no_dots_left",
        "ended",
    ]
    # New notes without a place took the first two free spots of their area.
    created = [e["payload"]["note"] for e in stored_with["events"] if e["type"] == "note.created"]
    assert [(n["x"], n["y"]) for n in created] == [spot(0), spot(1), (0.25, 0.75)]
    moved = [(n["x"], n["y"], n["area"]) for n in stored_with["notes"]]
    assert moved == [(0.5, 0.5, "how"), (0.1, 0.2, "now"), (0.25, 0.75, "how")]


async def _participant(server: Server, workshop: Workshop) -> Actor:
    fac = await workshop.facilitator()
    pid, _client = await workshop.participant("Ann")
    await fac.do("workshop.start")
    return Actor(role="participant", workshop_id=workshop.id, participant_id=pid)


def _vote() -> Any:
    return parse_command({"type": "card.vote", "card_id": CARD, "choice": "do"})


async def test_a_database_without_the_functions_turns_the_lane_off(
    server: Server, workshop: Workshop
) -> None:
    actor = await _participant(server, workshop)
    definition = server.live.cache.peek(workshop.id)
    assert definition is not None
    dsn = server.pg_dsn

    async def connect() -> asyncpg.Connection:
        # The functions live in the public schema: out of sight here.
        return await asyncpg.connect(dsn, server_settings={"search_path": "pg_catalog"})

    lane = PgLane(connect, size=1)
    try:
        assert await lane.run(actor, _vote(), definition, utcnow()) is None
        assert not lane.enabled
        assert lane.calls == 0
    finally:
        await lane.close()
    found = make_pg_lane(server.app.state.engine)
    assert found is not None
    try:
        done = await found.run(actor, _vote(), definition, utcnow())
        assert done is not None and done.event["type"] == "card.voted"
    finally:
        await found.close()


async def test_a_connection_the_server_dropped_is_replaced(
    server: Server, workshop: Workshop
) -> None:
    actor = await _participant(server, workshop)
    definition = server.live.cache.peek(workshop.id)
    lane = make_pg_lane(server.app.state.engine)
    assert lane is not None
    admin = await asyncpg.connect(server.pg_dsn)
    try:
        assert await lane.run(actor, _vote(), definition, utcnow()) is not None
        pids = await admin.fetch(
            "SELECT pid FROM pg_stat_activity WHERE query LIKE '%live_card_vote%'"
            " AND pid <> pg_backend_pid()"
        )
        assert len(pids) == 1
        await admin.execute("SELECT pg_terminate_backend($1)", pids[0]["pid"])
        await asyncio.sleep(0.2)
        try:
            done = await lane.run(actor, _vote(), definition, utcnow())
        except LaneUnavailable:
            done = await lane.run(actor, _vote(), definition, utcnow())
        assert done is not None
        assert lane.calls == 2
    finally:
        await admin.close()
        await lane.close()


async def test_a_lane_that_cannot_connect_sends_commands_the_usual_way(
    server: Server, workshop: Workshop
) -> None:
    fac = await workshop.facilitator()
    _pid, ann = await workshop.participant("Ann")
    await fac.do("workshop.start")
    attempts = []

    async def refused() -> asyncpg.Connection:
        attempts.append(1)
        raise ConnectionRefusedError("no PostgreSQL here")

    lane = server.pg_lane
    broken = PgLane(refused, size=1)
    server.live.pg_lane = broken
    try:
        first = await ann.do("card.vote", card_id=CARD, choice="do")
        second = await ann.do("card.vote", card_id=CARD, choice="dont")
    finally:
        server.live.pg_lane = lane
    assert second["seq"] == first["seq"] + 1
    assert len(attempts) == 2 and broken.calls == 0


@pytest.mark.parametrize(
    "failure",
    [
        ConnectionResetError("connection lost"),
        # asyncpg's own failure once a call is under way (not `ended_by_server`'s).
        asyncpg.InternalClientError("unknown error in protocol implementation"),
    ],
    ids=["reset", "asyncpg"],
)
async def test_a_call_that_fails_midway_answers_try_again(
    server: Server, workshop: Workshop, failure: Exception
) -> None:
    """The call may have committed: the sender is told to try again, nothing is retried."""
    fac = await workshop.facilitator()
    _pid, ann = await workshop.participant("Ann")
    await fac.do("workshop.start")

    class Dropping:
        def is_closed(self) -> bool:
            return False

        async def execute(self, *_args: Any, **_kwargs: Any) -> Any:
            return "DO"  # the warm-up (`PgLane._open`) goes through

        async def prepare(self, *_args: Any, **_kwargs: Any) -> Any:
            return None

        async def set_type_codec(self, *_args: Any, **_kwargs: Any) -> None:
            pass

        async def fetchrow(self, *_args: Any, **_kwargs: Any) -> Any:
            raise failure

        def terminate(self) -> None:
            pass

    async def dropping() -> Any:
        return Dropping()

    lane = server.pg_lane
    server.live.pg_lane = PgLane(dropping, size=1)
    try:
        assert (await ann.refused("card.vote", card_id=CARD, choice="do"))["code"] == "try_again"
    finally:
        server.live.pg_lane = lane
    assert (await ann.do("card.vote", card_id=CARD, choice="do"))["seq"] is not None


async def test_one_rooms_lane_calls_run_side_by_side_and_arrive_in_seq_order(
    server: Server, workshop: Workshop, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lane calls take no turn: while Ann's committed move waits for its answer, Bob's
    new note (another function) goes through, and its event is published first; the
    room still gives everyone Ann's event, then Bob's."""
    fac = await workshop.facilitator()
    _pa, ann = await workshop.participant("Ann")
    _pb, bob = await workshop.participant("Bob")
    await fac.do("workshop.start")
    await fac.do("phase.goto", index=REFLECT)
    await ann.do("note.create", area="how", text="Mine")
    created = await ann.until("note.created")
    start = created["seq"]
    lane = server.pg_lane
    call = lane._call
    held = asyncio.Event()
    calls = 0

    async def slow_answer(sql: str, args: list[tuple[Any, ...]]) -> Any:
        nonlocal calls
        calls += 1
        first = calls == 1
        rows = await call(sql, args)  # committed
        if first:
            await held.wait()  # its answer is late
        return rows

    monkeypatch.setattr(lane, "_call", slow_answer)
    ann_cid = await ann.send("note.move", note_id=created["note"]["id"], x=0.5, y=0.5)
    for _ in range(100):
        if calls:
            break
        await asyncio.sleep(0.01)
    bob_ack = await bob.do("note.create", area="now", text="Bob's")
    assert bob_ack["seq"] == start + 2  # Ann's took start + 1 and is not answered yet
    assert not [m for m in ann.received if m.get("cid") == ann_cid]
    await asyncio.sleep(0.03)
    held.set()
    ann_ack = await ann.reply(ann_cid)
    assert (ann_ack["type"], ann_ack["seq"]) == ("ack", start + 1)
    for client in (fac, ann, bob):
        await client.until(lambda m: m.get("type") == "note.created" and m["seq"] == start + 2)
        stored = [m["seq"] for m in client.events() if m["seq"] > start]
        assert stored == [start + 1, start + 2], client.name


async def test_calls_that_wait_for_one_of_their_kind_go_together_or_alone_if_refused(
    server: Server, workshop: Workshop
) -> None:
    """While a call of one function for one workshop is under way, the next ones wait
    and go as one transaction (one commit for all). A batch the server refuses (one
    of its calls is) writes nothing, and each call then goes alone."""
    fac = await workshop.facilitator()
    pids = [(await workshop.participant(name))[0] for name in ("Ann", "Bob", "Cat", "Dan")]
    await fac.do("workshop.start")
    ann, bob, cat, dan = (
        Actor(role="participant", workshop_id=workshop.id, participant_id=pid) for pid in pids
    )
    definition = server.live.cache.peek(workshop.id)
    lane = make_pg_lane(server.app.state.engine)
    assert lane is not None
    call = lane._call
    sizes: list[int] = []
    hold = [False]
    started = asyncio.Event()
    held = asyncio.Event()

    async def spy(sql: str, calls: list[tuple[Any, ...]], **kwargs: Any) -> Any:
        sizes.append(len(calls))
        rows = await call(sql, calls, **kwargs)
        if hold[0]:  # each round's first call: the others queue behind it
            hold[0] = False
            started.set()
            await held.wait()
        return rows

    lane._call = spy  # type: ignore[method-assign]

    async def round_of(*actors: Actor) -> list[Any]:
        hold[0] = True
        started.clear()
        held.clear()
        first = asyncio.create_task(lane.run(actors[0], _vote(), definition, utcnow()))
        await asyncio.wait_for(started.wait(), 10)
        rest = [
            asyncio.create_task(lane.run(actor, _vote(), definition, utcnow()))
            for actor in actors[1:]
        ]
        await asyncio.sleep(0.02)
        held.set()
        return [await task for task in (first, *rest)]

    admin = await asyncpg.connect(server.pg_dsn)
    try:
        done = await round_of(ann, bob, cat)
        assert sizes == [1, 2]  # Bob's and Cat's together
        seqs = [d.event["seq"] for d in done]
        assert seqs == [seqs[0], seqs[0] + 1, seqs[0] + 2]
        assert [d.event["voters"] for d in done] == [1, 2, 3]
        # Dan is removed: the function refuses his vote, and with it the batch.
        await admin.execute(
            "UPDATE participant SET removed_at = now() WHERE id = $1", dan.participant_id
        )
        done = await round_of(ann, bob, dan)
        assert sizes == [1, 2, 1, 2, 1, 1]  # the batch, then Bob's and Dan's alone
        assert done[0] is not None and done[1] is not None and done[2] is None
        assert done[1].event["seq"] == done[0].event["seq"] + 1
        stored = await admin.fetch(
            "SELECT seq FROM event WHERE workshop_id = $1 AND seq > $2 ORDER BY seq",
            workshop.id,
            seqs[-1],
        )
        assert [r["seq"] for r in stored] == [seqs[-1] + 1, seqs[-1] + 2]
    finally:
        await admin.close()
        await lane.close()


async def test_the_lanes_connections_open_warmed_before_the_first_command(
    server: Server, workshop: Workshop
) -> None:
    """`warm` opens every connection and has each one's server process call every
    function once, which refuses with nothing written and no error for the caller;
    the commands that follow use those connections. A connection that could not be
    opened then is opened on first use."""
    actor = await _participant(server, workshop)
    definition = server.live.cache.peek(workshop.id)
    dsn = server.pg_dsn
    opened: list[asyncpg.Connection] = []
    refuse_first = [True]

    async def connect() -> asyncpg.Connection:
        if refuse_first[0]:
            refuse_first[0] = False
            raise ConnectionRefusedError("not yet")
        connection = await asyncpg.connect(dsn)
        opened.append(connection)
        return connection

    admin = await asyncpg.connect(dsn)
    lane = PgLane(connect, size=3)
    try:
        before = await admin.fetchval(
            "SELECT count(*) FROM event WHERE workshop_id = $1", workshop.id
        )
        seq = await admin.fetchval("SELECT seq FROM workshop WHERE id = $1", workshop.id)
        await lane.warm()
        assert len(opened) == 2  # the first attempt was refused
        assert lane.enabled and not any(c.is_closed() for c in opened)
        after = await admin.fetchval(
            "SELECT count(*) FROM event WHERE workshop_id = $1", workshop.id
        )
        assert after == before
        assert await admin.fetchval("SELECT seq FROM workshop WHERE id = $1", workshop.id) == seq
        # Three commands, one after another: each takes the connection that has waited
        # longest, so two use the warmed ones and one opens the third.
        for _ in range(3):
            assert await lane.run(actor, _vote(), definition, utcnow()) is not None
        assert len(opened) == 3
        await lane.warm()  # all open: nothing more to open
        assert len(opened) == 3
    finally:
        await admin.close()
        await lane.close()


async def test_a_connection_that_cannot_be_warmed_is_used_cold(
    server: Server, workshop: Workshop
) -> None:
    """A server that refuses the warm-up (here: no right to run a DO block) leaves the
    connection usable: the commands still go through the lane, on that connection."""
    actor = await _participant(server, workshop)
    definition = server.live.cache.peek(workshop.id)
    dsn = server.pg_dsn
    opened: list[asyncpg.Connection] = []

    class NoDo:
        def __init__(self, connection: asyncpg.Connection) -> None:
            self.connection = connection

        async def execute(self, query: str, *args: Any, **kwargs: Any) -> Any:
            if query.startswith("DO "):
                raise asyncpg.InsufficientPrivilegeError("permission denied for language")
            return await self.connection.execute(query, *args, **kwargs)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.connection, name)

    async def connect() -> Any:
        connection = await asyncpg.connect(dsn)
        opened.append(connection)
        return NoDo(connection)

    lane = PgLane(connect, size=1)
    try:
        await lane.warm()
        assert len(opened) == 1 and not opened[0].is_closed()
        done = await lane.run(actor, _vote(), definition, utcnow())
        assert done is not None and done.event["type"] == "card.voted"
        assert len(opened) == 1 and lane.enabled and lane.calls == 1
    finally:
        await lane.close()


async def test_a_socket_is_admitted_by_one_lane_read_with_the_usual_rules(
    server: Server, workshop: Workshop
) -> None:
    """Once a workshop's definition is cached here, the handshake's reads (the workshop
    row, the participant) are one read on the lane and none through SQLAlchemy; the
    lane's answer refuses what the usual reads refuse; a lane that cannot read leaves
    them to the usual reads."""
    live, lane = server.live, server.pg_lane
    reads: list[tuple[str, str | None, bool]] = []
    admit = lane.admit

    async def counted(workshop_id: str, participant_id: str | None) -> Any:
        row = await admit(workshop_id, participant_id)
        reads.append((workshop_id, participant_id, row is not None))
        return row

    lane.admit = counted  # type: ignore[method-assign]
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        statements.append(statement)

    engine = server.app.state.engine.sync_engine
    sa_event.listen(engine, "before_cursor_execute", seen)
    admin = await asyncpg.connect(server.pg_dsn)
    try:
        fac = await workshop.facilitator()  # the first socket here reads it the usual way
        assert reads == [] and live.cache.peek(workshop.id) is not None
        ann_id, ann_token = await workshop.join("Ann")
        ann = await workshop.connect(ann_token, "ann")
        seq = (await ann.until("snapshot"))["seq"]
        await ann.close()
        statements.clear()
        reads.clear()
        # A resume the room's memory covers: no statement at all, one lane read.
        ann = await workshop.connect(ann_token, "ann", last_seq=seq)
        assert reads == [(workshop.id, ann_id, True)]
        assert statements == []
        await ann.close()

        codec = TokenCodec(server.settings.secret_key)
        other = await new_workshop(server, "other@agency.gov")
        olive_id, _olive_token = await other.join("Olive")
        rex_id, rex_token = await workshop.join("Rex")
        await admin.execute("UPDATE participant SET removed_at = now() WHERE id = $1", rex_id)
        # A workshop this worker still knows that has no row any more.
        raw = await admin.fetchval("SELECT definition FROM workshop WHERE id = $1", workshop.id)
        live.cache.put("gone-workshop", json.loads(raw))
        base = f"{server.ws_base}/ws/workshops"
        olive_here = codec.dumps(PARTICIPANT, {"w": workshop.id, "p": olive_id})
        refused = {
            "removed": (workshop.id, rex_token, rex_id),
            "another workshop's participant": (workshop.id, olive_here, olive_id),
            "another workshop's facilitator": (workshop.id, other.facilitator_token, None),
            "no such workshop": ("gone-workshop", workshop.facilitator_token, None),
        }
        for what, (wid, token, pid) in refused.items():
            reads.clear()
            with pytest.raises(InvalidStatus) as refusal:
                await websockets.connect(f"{base}/{wid}?token={token}")
            assert refusal.value.response.status_code == 403, what
            assert reads == [(wid, pid, True)], what

        # The lane cannot read: the usual reads decide, as before.
        async def unread(workshop_id: str, participant_id: str | None) -> None:
            reads.append((workshop_id, participant_id, False))

        lane.admit = unread  # type: ignore[method-assign]
        statements.clear()
        ann = await workshop.connect(ann_token, "ann", last_seq=seq)
        assert any("FROM participant" in s for s in statements)
        await ann.close()
        with pytest.raises(InvalidStatus) as refusal:
            await websockets.connect(f"{base}/{workshop.id}?token={rex_token}")
        assert refusal.value.response.status_code == 403
        await fac.close()
    finally:
        sa_event.remove(engine, "before_cursor_execute", seen)
        lane.admit = admit  # type: ignore[method-assign]
        await admin.close()
