"""Bad input over the socket: every bad message gets one clear error, to its sender only.

Nothing is stored (the workshop's `seq` and event log are unchanged in the database),
nobody else hears of it, and the connection stays open (a `ping` still gets its
`pong`), except in the abuse cases: a frame over 64 KiB (closed with 1009) and a
flood over the rate limit (`rate_limited` errors, then closed with 1008).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import websockets
from sqlalchemy import func
from sqlmodel import select
from websockets.exceptions import ConnectionClosed

from app.db.engine import make_engine, make_sessionmaker
from app.db.models import Event
from app.db.models import Workshop as WorkshopRow
from app.realtime import socket
from app.realtime.socket import MAX_MESSAGE_BYTES, MAX_STRIKES, RATE_BURST
from tests.realtime.conftest import Client, Server, Workshop

CARD = "measurement-feedback-channel"
SORT, REFLECT = 1, 4


class Db:
    """Reads the server's database directly, to prove what was (not) stored."""

    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)
        self.sessions = make_sessionmaker(self.engine)

    async def state(self, workshop_id: str) -> tuple[int, int, int]:
        """(workshop.seq, number of events, highest event seq)."""
        async with self.sessions() as session:
            row = await session.get(WorkshopRow, workshop_id)
            assert row is not None
            count, top = (
                await session.exec(
                    select(func.count(), func.coalesce(func.max(Event.seq), 0)).where(
                        Event.workshop_id == workshop_id
                    )
                )
            ).one()
            return row.seq, int(count), int(top)


@pytest.fixture
async def db(server: Server) -> AsyncIterator[Db]:
    found = Db(server.settings.database_url)
    yield found
    await found.engine.dispose()


def server_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        f"{r.name}: {r.getMessage()}"
        for r in caplog.records
        if r.levelno >= logging.ERROR and r.name.split(".")[0] in ("app", "uvicorn")
    ]


def untaken(client: Client) -> list[dict[str, Any]]:
    """Messages received but not yet taken by next/until/reply."""
    return [m for i, m in enumerate(client.received) if i not in client._taken]


async def still_open(client: Client) -> None:
    cid = await client.send("ping")
    pong = await client.until(lambda m: m.get("cid") == cid and m["type"] in ("pong", "error"))
    assert pong["type"] == "pong" and isinstance(pong["seq"], int), pong


async def heard_nothing(client: Client) -> None:
    """A ping round trip: anything the server sent `client` before it has arrived by now."""
    await still_open(client)
    assert untaken(client) == []


async def drain(*clients: Client) -> None:
    """Take everything sent so far to each client (a ping round trip each)."""
    for client in clients:
        await still_open(client)
        client._taken.update(range(len(client.received)))


async def closed_with(client: Client, timeout: float = 5.0) -> tuple[int | None, str | None]:
    """Read (without taking) until the server closes the socket; its close code and reason."""
    with pytest.raises(ConnectionClosed):
        await client.quiet(timeout)
    return client.ws.close_code, client.ws.close_reason


async def room(workshop: Workshop) -> tuple[Client, Client, Client, str]:
    """A started workshop (sort phase): the facilitator, Ann (and her id), Bob."""
    fac = await workshop.facilitator()
    await fac.do("workshop.start")
    ann_id, ann = await workshop.participant("Ann")
    _, bob = await workshop.participant("Bob")
    await drain(fac, ann, bob)
    await drain(fac, ann, bob)  # the presence of the last to join reached everyone
    return fac, ann, bob, ann_id


# (what is sent, the cid the error must carry, words the error message must contain)
INVALID: list[tuple[str | bytes, str | None, str]] = [
    ("{not json", None, "not valid JSON"),
    ('{"type": "ping", "cid": "unclosed"', None, "not valid JSON"),
    ("[1, 2, 3]", None, "object"),
    ('["ping"]', None, "object"),
    ('"ping"', None, "object"),
    ("null", None, "object"),
    ("42", None, "object"),
    ("", None, "not valid JSON"),
    ("[" * 4000 + "]" * 4000, None, "not valid JSON"),  # nesting deeper than any parser
    (b'{"type": "ping"}', None, "text frames"),  # a binary frame
    ('{"cid": "c-no-type"}', "c-no-type", "no 'type'"),
    ('{"type": "note.fly", "cid": "c-unknown"}', "c-unknown", "unknown command type 'note.fly'"),
    ('{"type": 7, "cid": "c-int-type"}', "c-int-type", "unknown command type 7"),
    ('{"type": null, "cid": "c-null-type"}', "c-null-type", "unknown command type"),
    ('{"type": "phase.goto", "index": "3", "cid": "c-str"}', "c-str", "index"),
    ('{"type": "phase.goto", "index": 3.0, "cid": "c-float"}', "c-float", "valid integer"),
    ('{"type": "phase.goto", "index": true, "cid": "c-bool"}', "c-bool", "valid integer"),
    ('{"type": "phase.goto", "index": -1, "cid": "c-neg"}', "c-neg", "greater than or equal"),
    ('{"type": "phase.goto", "cid": "c-missing"}', "c-missing", "index: Field required"),
    ('{"type": "ping", "cid": "c-extra", "colour": "red"}', "c-extra", "colour: Extra inputs"),
    (
        '{"type": "note.move", "note_id": "n", "x": 2.0, "y": 0.5, "cid": "c-x"}',
        "c-x",
        "x: Input should be less than or equal to 1",
    ),
    (
        '{"type": "note.move", "note_id": "n", "x": NaN, "y": 0.5, "cid": "c-nan"}',
        "c-nan",
        "finite",
    ),
    (
        '{"type": "note.move", "note_id": "n", "x": 0.5, "y": 1e400, "cid": "c-inf"}',
        "c-inf",
        "finite",
    ),
    ('{"type": "ping", "ts": "yesterday", "cid": "c-ts"}', "c-ts", "ts"),
    (
        '{"type": "card.vote", "card_id": "", "choice": "do", "cid": "c-empty"}',
        "c-empty",
        "card_id",
    ),
    ('{"type": "card.vote", "card_id": "x", "choice": "maybe", "cid": "c-lit"}', "c-lit", "choice"),
    (
        '{"type": "card.vote", "card_id": "a\\u0000", "choice": "do", "cid": "c-nul"}',
        "c-nul",
        "card_id",
    ),
    ('{"type": "timer.start", "seconds": 5, "cid": "c-short"}', "c-short", "seconds"),
    ('{"type": "sync", "last_seq": -1, "cid": "c-sync"}', "c-sync", "last_seq"),
    ('{"type": "spotlight.set", "cid": "c-target"}', "c-target", "target: Field required"),
    (  # the card decision column holds 1000 characters (PostgreSQL would refuse more)
        '{"type": "card.settle", "card_id": "x", "practised": true, "note": "'
        + "n" * 1001
        + '", "cid": "c-note"}',
        "c-note",
        "note: String should have at most 1000 characters",
    ),
    ('{"type": "presence.set", "status": "busy", "cid": "c-status"}', "c-status", "status"),
    ('{"type": "ping", "cid": 5}', None, "cid"),  # a cid that is not a string is not echoed
    ('{"type": "ping", "cid": "' + "c" * 65 + '"}', None, "cid"),
    ('{"type": "ping", "cid": "\\ud800"}', None, "not valid JSON"),  # a lone surrogate
]


async def test_invalid_messages_get_one_error_to_their_sender_only(
    workshop: Workshop, db: Db, caplog: pytest.LogCaptureFixture
) -> None:
    fac, ann, bob, _ = await room(workshop)
    before = await db.state(workshop.id)
    for sender, observers in ((ann, (fac, bob)), (fac, (ann, bob))):
        for raw, cid, words in INVALID:
            if isinstance(raw, bytes):
                await sender.ws.send(raw)
            else:
                await sender.send_raw(raw)
            error = await sender.next()
            code = "binary" if isinstance(raw, bytes) else "invalid_message"
            assert error == {"type": "error", "cid": cid, "code": code, "message": error["message"]}
            assert words in error["message"], (raw[:80], error)
        await heard_nothing(sender)
        for observer in observers:
            await heard_nothing(observer)
    assert await db.state(workshop.id) == before
    assert server_errors(caplog) == []


async def test_size_limit_is_in_bytes_and_keeps_the_connection(
    workshop: Workshop, db: Db, caplog: pytest.LogCaptureFixture
) -> None:
    fac, ann, bob, _ = await room(workshop)
    before = await db.state(workshop.id)

    def sized(size: int, char: str = "x") -> str:
        head = '{"type": "note.create", "area": "now", "cid": "big", "text": "'
        text = head + char * ((size - len(head) - 2) // len(char.encode())) + '"}'
        text = text.replace('"cid"', '"cid"' + " " * (size - len(text.encode())), 1)
        assert len(text.encode()) == size, len(text.encode())
        return text

    # Exactly at the limit: parsed (and refused by the schema: notes hold 500 characters).
    await ann.send_raw(sized(MAX_MESSAGE_BYTES))
    error = await ann.next()
    assert (error["code"], error["cid"]) == ("invalid_message", "big"), error
    assert "text" in error["message"]
    # Over it, even by one byte (or by counting bytes, not characters): refused unread,
    # so its cid cannot be echoed.
    accented = sized(MAX_MESSAGE_BYTES + 1, "é")
    assert len(accented) < MAX_MESSAGE_BYTES  # over the limit in bytes, not in characters
    for text in (sized(MAX_MESSAGE_BYTES + 1), accented, "x" * 60_000):
        await ann.send_raw(text)
        error = await ann.next()
        assert error["code"] == "too_large" and error["cid"] is None, error
        assert str(MAX_MESSAGE_BYTES) in error["message"]
    await heard_nothing(ann)
    await heard_nothing(fac)
    await heard_nothing(bob)
    assert await db.state(workshop.id) == before
    assert server_errors(caplog) == []


async def test_frame_over_64_kib_closes_1009(
    workshop: Workshop, db: Db, caplog: pytest.LogCaptureFixture
) -> None:
    fac, ann, bob, ann_id = await room(workshop)
    before = await db.state(workshop.id)
    await ann.send_raw(json.dumps({"type": "ping", "cid": "huge", "pad": "x" * 64 * 1024}))
    code, _reason = await closed_with(ann)
    assert code == 1009
    assert untaken(ann) == []  # no answer: the frame was never read
    # The others only hear that Ann went offline; the room carries on.
    for observer in (fac, bob):
        offline = await observer.until("participant.presence")
        assert (offline["participant_id"], offline["status"]) == (ann_id, "offline")
        await heard_nothing(observer)
    await fac.do("phase.next")
    assert await db.state(workshop.id) == tuple(n + 1 for n in before)
    assert server_errors(caplog) == []


async def test_flood_is_rate_limited_then_closed_1008(
    workshop: Workshop, db: Db, caplog: pytest.LogCaptureFixture
) -> None:
    fac, ann, bob, ann_id = await room(workshop)
    before = await db.state(workshop.id)
    sent: list[str] = []
    try:
        for _ in range(RATE_BURST + MAX_STRIKES + 200):
            sent.append(await ann.send("card.vote", card_id=CARD, choice="do"))
    except ConnectionClosed:
        pass
    code, reason = await closed_with(ann)
    assert (code, reason) == (1008, "too many messages")
    replies = untaken(ann)
    acks = [m for m in replies if m["type"] == "ack"]
    limited = [m for m in replies if m["type"] == "error"]
    events = [m for m in replies if m["type"] == "card.voted"]
    assert len(acks) + len(limited) + len(events) == len(replies)
    # The burst is served, then every message is refused with its cid until the
    # MAX_STRIKES-th; the next one closes the socket. Every answer arrived, in order.
    assert len(acks) >= RATE_BURST - 2  # (the room's set-up used a ping or two)
    assert len(limited) == MAX_STRIKES
    assert {m["code"] for m in limited} == {"rate_limited"}
    answered = [m["cid"] for m in replies if m["type"] != "card.voted"]
    assert answered == sent[: len(answered)]
    assert len(answered) < len(sent)
    # Only the accepted votes were stored, and the others saw only those, then Ann leave.
    assert await db.state(workshop.id) == tuple(n + len(acks) for n in before)
    for observer in (fac, bob):
        for _ in acks:
            await observer.until("card.voted")
        offline = await observer.until("participant.presence")
        assert (offline["participant_id"], offline["status"]) == (ann_id, "offline")
        await heard_nothing(observer)
    assert server_errors(caplog) == []


async def test_refused_actions_in_the_wrong_state(
    workshop: Workshop, db: Db, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(socket, "RATE_PER_SECOND", 1000.0)  # many pings here, on purpose
    fac = await workshop.facilitator()
    _, ann = await workshop.participant("Ann")
    _, bob = await workshop.participant("Bob")
    everyone = (fac, ann, bob)
    await drain(*everyone)
    await drain(*everyone)

    async def refused(sender: Client, code: str, type_: str, **fields: Any) -> None:
        before = await db.state(workshop.id)
        error = await sender.refused(type_, **fields)
        assert error["code"] == code, (type_, fields, error)
        assert len(error["message"]) > 10, error
        for client in everyone:  # the sender still answers, and nobody heard anything
            await heard_nothing(client)
        assert await db.state(workshop.id) == before, (type_, fields)

    # The lobby: participants wait for the start.
    await refused(ann, "not_started", "card.vote", card_id=CARD, choice="do")
    await refused(ann, "not_started", "note.create", area="now", text="Hi")
    await refused(fac, "not_running", "phase.goto", index=REFLECT)
    await refused(fac, "not_running", "card.settle", card_id=CARD, practised=True)
    await refused(fac, "not_running", "timer.start", seconds=60)

    await fac.do("workshop.start")  # the sort phase of the first core function
    await drain(*everyone)
    await refused(ann, "wrong_phase", "note.create", area="now", text="Hi")
    await refused(ann, "wrong_phase", "level.vote", level=1)
    await refused(ann, "wrong_phase", "dot.add", note_id="n1")
    await refused(ann, "wrong_phase", "dot.remove", note_id="n1")
    await refused(ann, "wrong_phase", "group.create", area="now", label="L")
    await refused(ann, "wrong_phase", "card.vote", card_id="culture-curiosity", choice="do")
    await refused(ann, "unknown_card", "card.vote", card_id="no-such-card", choice="do")
    await refused(fac, "wrong_phase", "dots.set_budget", budget=5)
    await refused(fac, "wrong_phase", "level_round.open")
    await refused(fac, "wrong_phase", "note.create", area="now", text="Hi")
    await refused(fac, "no_such_phase", "phase.goto", index=999)
    await refused(fac, "no_timer", "timer.pause")
    await refused(fac, "no_timer", "timer.extend", seconds=60)
    await refused(fac, "unknown_level", "level.record", function_id="measurement", level=3)
    await refused(fac, "unknown_function", "level.record", function_id="nope", level=1)
    await refused(fac, "unknown_participant", "participant.remove", participant_id="nobody")
    await refused(fac, "unknown_target", "spotlight.set", target={"kind": "card", "id": "x"})

    await fac.do("phase.goto", index=REFLECT)
    await drain(*everyone)
    await refused(fac, "wrong_phase", "votes.reveal")
    await refused(ann, "wrong_phase", "card.vote", card_id=CARD, choice="do")
    await refused(ann, "unknown_area", "note.create", area="elsewhere", text="Hi")
    await refused(ann, "unknown_colour", "note.create", area="now", text="Hi", colour="x")
    await refused(ann, "invalid", "note.create", area="now", text="  \u200b ")
    await refused(ann, "unknown_note", "note.move", note_id="nope", x=0.1, y=0.1)
    await refused(ann, "unknown_group", "group.rename", group_id="nope", label="L")

    await fac.do("phase.goto", index=SORT)
    await fac.do("input.lock")
    await drain(*everyone)
    await refused(ann, "locked", "card.vote", card_id=CARD, choice="do")
    await refused(bob, "locked", "card.vote", card_id=CARD, choice="dont")
    await fac.do("input.unlock")
    await ann.do("card.vote", card_id=CARD, choice="do")  # unlocked: it works again
    await fac.do("workshop.end")
    await drain(*everyone)
    await refused(ann, "ended", "card.vote", card_id=CARD, choice="dont")
    await refused(fac, "ended", "phase.next")
    await refused(fac, "ended", "input.lock")
    await refused(fac, "ended", "workshop.end")
    await refused(fac, "ended", "workshop.start")
    assert server_errors(caplog) == []


async def test_sync_from_beyond_the_log_gets_a_snapshot(
    workshop: Workshop, db: Db, caplog: pytest.LogCaptureFixture
) -> None:
    """A `last_seq` the log never reached (stale, bogus, or past 64 bits) is answered
    with a snapshot: trusting it would hide the next events from that client, and a
    huge one used to kill the connection's writer (no more answers at all)."""
    fac, ann, bob, _ = await room(workshop)
    seq, _, _ = await db.state(workshop.id)
    for ahead in (10**30, 2**63, 50, 0):
        last_seq = ahead if ahead > 2**32 else seq + ahead
        cid = await ann.send("sync", last_seq=last_seq)
        answer = await ann.reply(cid)
        assert answer == {"type": "ack", "cid": cid, "seq": None, "result": {}}
        caught_up = untaken(ann)
        if ahead:
            assert [m["type"] for m in caught_up] == ["snapshot"], last_seq
            assert caught_up[0]["seq"] == seq
        else:
            assert caught_up == []  # nothing was missed
        await drain(ann)
        ack = await fac.do("phase.next")  # and the next event still reaches Ann
        changed = await ann.until("phase.changed")
        assert changed["seq"] == ack["seq"] == seq + 1
        await drain(fac, ann, bob)
        seq += 1
    # The same when connecting: `last_seq` in the URL, beyond the log or not a number.
    for in_url in ("100000000000000000000000000000", str(seq + 5), "-7", "x"):
        query = httpx.QueryParams({"token": workshop.facilitator_token, "last_seq": in_url})
        url = f"{workshop.server.ws_base}/ws/workshops/{workshop.id}?{query}"
        late = Client(await websockets.connect(url), "late")
        assert (await late.next())["type"] == "hello"
        snapshot = await late.next()
        assert snapshot["type"] == "snapshot" and snapshot["seq"] == seq, in_url
        await heard_nothing(late)
        await late.close()
    assert server_errors(caplog) == []
