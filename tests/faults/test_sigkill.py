"""The server is killed (SIGKILL) while people vote and write, then started again.

A real `uvicorn app.asgi:app` process, on a SQLite file and on PostgreSQL. Two
workshops run at once: in one, four participants keep sorting cards (changing their
votes), in the other four keep writing, moving and editing notes; each sends a
command every 50 ms without waiting for replies, and a facilitator watches each room.
Mid-stream the whole process group gets SIGKILL; the server is started again on the
same port. Then, precisely:

* **The log has no holes**: each workshop's events are numbered 1..seq.
* **Every confirmed command is there, once, in order**: one connection's commands run
  one after another, so what a participant's commands wrote is a prefix of what it
  sent: its k-th stored event is the effect of its k-th command (same kind, same
  card and choice, same note and text or position). Every acked command lies inside
  that prefix, at the seq its ack named. Commands after the prefix, unacked, left no
  trace; at most the ones whose ack was lost to the kill are in it.
* **Nothing appears that the log does not account for**: every card vote row is the
  last `card.voted` of its participant and card, every note row is a `note.created`
  with the text and position of its last event, and nothing else exists.
* **Clients resume exactly once**: each reconnects with the `last_seq` it saw and gets
  every event it missed, in order, no repeats, no holes (its streams before and after
  the kill together cover the log once), then live events again.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import col, select
from websockets.exceptions import ConnectionClosed

from app.db.engine import make_engine, make_sessionmaker
from app.db.models import CardVote, Event, Note, Workshop
from tests.faults.conftest import ServerProcess, Stream, wait_until
from tests.net import free_port
from tests.realtime.conftest import Workshop as LiveWorkshop
from tests.realtime.conftest import new_workshop

PEOPLE = 4
PERIOD_S = 0.06  # under the 20 messages/s limit, so nothing is dropped as rate_limited
KILL_AFTER_ACKS = 160
AREAS = ("now", "hope", "how")
REFLECT = 4  # measurement.reflect in the default definition
EFFECTS = {
    "card.vote": "card.voted",
    "note.create": "note.created",
    "note.move": "note.moved",
    "note.edit": "note.edited",
}


async def _voter(stream: Stream, cards: list[str], rng: random.Random) -> None:
    with contextlib.suppress(ConnectionClosed):
        while True:
            choice = rng.choice(["do", "dont", "unsure"])
            await stream.send("card.vote", card_id=rng.choice(cards), choice=choice)
            await asyncio.sleep(PERIOD_S)


async def _writer(stream: Stream, rng: random.Random) -> None:
    with contextlib.suppress(ConnectionClosed):
        n = 0
        while True:
            n += 1
            mine = [
                a["result"]["note_id"]
                for a in stream.replies().values()
                if "note_id" in a["result"]
            ]
            roll = rng.random()
            x, y = round(rng.random(), 3), round(rng.random(), 3)
            if not mine or roll < 0.4:
                area = rng.choice(AREAS)
                await stream.send("note.create", area=area, text=f"{stream.name} #{n}", x=x, y=y)
            elif roll < 0.7:
                await stream.send("note.move", note_id=rng.choice(mine), x=x, y=y)
            else:
                await stream.send("note.edit", note_id=rng.choice(mine), text=f"{stream.name} e{n}")
            await asyncio.sleep(PERIOD_S)


async def _room(server: Any, email: str, phase: int | None) -> tuple[LiveWorkshop, Stream]:
    workshop = await new_workshop(server, email)
    fac = await Stream.open(server.base, workshop.id, workshop.facilitator_token, "fac")
    await fac.do("workshop.start")
    if phase is not None:
        await fac.do("phase.goto", index=phase)
    return workshop, fac


def _events_of(events: list[Event], pid: str) -> list[Event]:
    return [e for e in events if e.actor == f"participant:{pid}" and e.type != "participant.joined"]


def _check_prefix(stream: Stream, own: list[Event]) -> int:
    """Its stored events are the effects of its first k commands; returns k."""
    replies = stream.replies()
    errors = [r for r in replies.values() if r["type"] == "error"]
    assert not errors, f"{stream.name}: refused before the kill: {errors}"
    k = len(own)
    assert k <= len(stream.sent), f"{stream.name}: more effects than commands"
    created: dict[str, str] = {}  # cid of note.create -> the note id it got
    for command, event in zip(stream.sent, own, strict=False):
        assert event.type == EFFECTS[command["type"]], (command, event.type)
        payload = event.payload
        if command["type"] == "card.vote":
            assert (payload["card_id"], payload["choice"]) == (
                command["card_id"],
                command["choice"],
            )
        elif command["type"] == "note.create":
            note = payload["note"]
            assert (note["text"], note["area"], note["x"], note["y"]) == (
                command["text"],
                command["area"],
                command["x"],
                command["y"],
            )
            created[command["cid"]] = note["id"]
        elif command["type"] == "note.move":
            assert (payload["note_id"], payload["x"], payload["y"]) == (
                command["note_id"],
                command["x"],
                command["y"],
            )
        else:
            assert (payload["note_id"], payload["text"]) == (command["note_id"], command["text"])
    for index, command in enumerate(stream.sent):
        ack = replies.get(command["cid"])
        if ack is None:
            continue
        assert index < k, f"{stream.name}: acked {command['cid']} left no event"
        assert ack["seq"] == own[index].seq
        if command["type"] == "note.create":
            assert ack["result"]["note_id"] == created[command["cid"]]
    return k


async def _check_rows(url: str, workshop_id: str) -> list[Event]:
    """The log has no holes, and every row is what the log says."""
    engine = make_engine(url)
    async with make_sessionmaker(engine)() as session:
        workshop = await session.get(Workshop, workshop_id)
        assert workshop is not None
        events = list(
            (
                await session.exec(
                    select(Event).where(Event.workshop_id == workshop_id).order_by(col(Event.seq))
                )
            ).all()
        )
        votes = (
            await session.exec(select(CardVote).where(CardVote.workshop_id == workshop_id))
        ).all()
        notes = (await session.exec(select(Note).where(Note.workshop_id == workshop_id))).all()
    await engine.dispose()
    assert [e.seq for e in events] == list(range(1, workshop.seq + 1)), "holes in the log"

    last_vote: dict[tuple[str, str], str] = {}
    note_state: dict[str, dict[str, Any]] = {}
    for e in events:
        p = e.payload
        if e.type == "card.voted":
            last_vote[(p["participant_id"], p["card_id"])] = p["choice"]
        elif e.type == "note.created":
            n = p["note"]
            note_state[n["id"]] = {"text": n["text"], "x": n["x"], "y": n["y"], "area": n["area"]}
        elif e.type == "note.moved":
            note_state[p["note_id"]].update(x=p["x"], y=p["y"])
        elif e.type == "note.edited":
            note_state[p["note_id"]]["text"] = p["text"]
    assert {(v.participant_id, v.card_id): v.choice for v in votes} == last_vote
    assert {n.id: {"text": n.text, "x": n.x, "y": n.y, "area": n.area} for n in notes} == note_state
    return events


async def _resume(base: str, workshop_id: str, token: str, before: Stream, final: int) -> Stream:
    """Reconnect from what the client saw; it gets exactly the rest of the log."""
    since = before.last_seq()
    after = await Stream.open(base, workshop_id, token, before.name, last_seq=str(since))
    await wait_until(
        lambda: any(m["seq"] == final for m in after.stored()) or since == final,
        15,
        f"{before.name} catching up to {final}",
    )
    assert not after.find(lambda m: m["type"] == "snapshot"), "resumed with a snapshot"
    old = [m["seq"] for m in before.stored()]
    new = [m["seq"] for m in after.stored()]
    assert new == list(range(since + 1, final + 1)), f"{before.name}: {new}"
    assert not set(old) & set(new), "an event came twice"
    return after


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
async def test_sigkill_while_voting_and_writing(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, processes: list[ServerProcess]
) -> None:
    url = request.getfixturevalue("sqlite_url" if backend == "sqlite" else "pg_url")
    proc = ServerProcess(url, free_port(), tmp_path / "server")
    processes.append(proc)
    await proc.start()
    async with httpx.AsyncClient(base_url=proc.base) as http:
        server = proc.server(http)
        votes, votes_fac = await _room(server, "votes@agency.gov", None)
        notes, notes_fac = await _room(server, "notes@agency.gov", REFLECT)
        snapshot = await votes_fac.wait(lambda m: m["type"] == "snapshot")
        cards = [c["id"] for c in snapshot["definition"]["functions"][0]["cards"]]

        people: list[tuple[LiveWorkshop, str, str, Stream]] = []
        for room in (votes, notes):
            for i in range(PEOPLE):
                name = f"{'V' if room is votes else 'N'}{i}"
                pid, token = await room.join(name)
                stream = await Stream.open(proc.base, room.id, token, name)
                people.append((room, pid, token, stream))
        drivers = [
            asyncio.create_task(
                _voter(s, cards, random.Random(i))
                if room is votes
                else _writer(s, random.Random(i))
            )
            for i, (room, _pid, _token, s) in enumerate(people)
        ]

        def acks() -> int:
            return sum(1 for *_, s in people for m in s.received if m["type"] == "ack" and m["seq"])

        await wait_until(lambda: acks() >= KILL_AFTER_ACKS, 30, "acks before the kill")
        proc.kill()  # SIGKILL to the process group, mid-stream
        streams = [s for *_, s in people] + [votes_fac, notes_fac]
        await wait_until(lambda: all(s.closed for s in streams), 10, "sockets to drop")
        await asyncio.gather(*drivers)

        await proc.start()  # same port, same database
        finals: dict[str, int] = {}
        for room in (votes, notes):
            events = await _check_rows(url, room.id)
            finals[room.id] = events[-1].seq
            for r, pid, _token, stream in people:
                if r is room:
                    _check_prefix(stream, _events_of(events, pid))
        total_sent = sum(len(s.sent) for *_, s in people)
        assert acks() >= KILL_AFTER_ACKS and total_sent > acks(), "the kill was not mid-stream"

        resumed: list[Stream] = []
        for room, _pid, token, stream in people:
            stream.assert_in_order()
            resumed.append(await _resume(proc.base, room.id, token, stream, finals[room.id]))
        for room, fac in ((votes, votes_fac), (notes, notes_fac)):
            fac.assert_in_order()
            resumed.append(
                await _resume(proc.base, room.id, room.facilitator_token, fac, finals[room.id])
            )

        # Live again: a new vote reaches everyone in its room once, right after the rest.
        voter = resumed[0]
        ack = await voter.do("card.vote", card_id=cards[0], choice="do")
        assert ack["seq"] == finals[votes.id] + 1
        voted = ack["seq"]
        in_votes = [s for (room, *_), s in zip(people, resumed, strict=False) if room is votes]
        for stream in [*in_votes, resumed[-2]]:  # its participants and its facilitator
            await stream.wait(lambda m: m.get("seq") == voted and m["type"] == "card.voted")
        for stream in resumed:
            await stream.close()
