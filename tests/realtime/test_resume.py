"""Reconnect with a gap: events missed while away arrive exactly once, in order.

A client resumes with `last_seq` (the last `seq` it saw): it gets the stored events
after it, each once and in order, then live ones, even while others keep acting
during the reconnect. Too far behind (more than `RESUME_LIMIT` missed) it gets a
snapshot instead. The `sync` command does the same mid-connection, and a publish
that was lost is filled from the log. Identity and votes survive a reconnect; a
removed participant is disconnected (4003) and cannot come back.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any, get_args

import pytest
import websockets

from app.realtime import messages as m
from app.realtime import socket as socket_module
from app.services.live import snapshot as snapshot_module
from app.services.live.engine import LiveService
from tests.realtime.conftest import Client, Workshop

EVENT_TYPES = frozenset(
    get_args(model.model_fields["type"].annotation)[0]
    for model in get_args(get_args(m.AnyEvent)[0])
)
STORED = EVENT_TYPES - m.EPHEMERAL_EVENTS
CARD = "measurement-feedback-channel"
CARD_2 = "measurement-core-questions"


def seqs(client: Client) -> list[int]:
    """The seqs of the stored events the client received, in arrival order."""
    return [msg["seq"] for msg in client.received if msg.get("type") in STORED]


def last_seen(client: Client, default: int = 0) -> int:
    """What a client would pass as `last_seq`: the newest stored seq it received
    (a snapshot counts as having seen everything up to its seq)."""
    found = [msg["seq"] for msg in client.received if msg.get("type") in STORED | {"snapshot"}]
    return max(found, default=default)


def validate(client: Client) -> None:
    for msg in client.received:
        if msg.get("type") in EVENT_TYPES:
            m.EVENTS.validate_python(msg)


async def until_seq(client: Client, seq: int) -> None:
    """Read until the client has received stored event `seq` (or a snapshot past it)."""
    await client.until(
        lambda msg: (
            (msg.get("type") in STORED and msg["seq"] == seq)
            or (msg.get("type") == "snapshot" and msg["seq"] >= seq)
        )
    )


async def drain(client: Client) -> None:
    """Read everything the client was sent until the server closed the socket."""
    while True:
        try:
            await client.next()
        except websockets.ConnectionClosed:
            return


async def in_reflect(workshop: Workshop) -> tuple[Client, tuple[str, str, Client]]:
    """A running workshop in the first reflect phase, the facilitator and Ann connected."""
    fac = await workshop.facilitator()
    ann_id, ann_token = await workshop.join("Ann")
    ann = await workshop.connect(ann_token, "Ann")
    await fac.do("workshop.start")
    ack = await fac.do("phase.goto", index=4)
    await until_seq(ann, ack["seq"])
    return fac, (ann_id, ann_token, ann)


def lose_publishes(
    monkeypatch: pytest.MonkeyPatch, lost: Callable[[dict[str, Any]], bool]
) -> list[dict[str, Any]]:
    """Make the hub lose the published messages matching `lost` (committed anyway,
    as when a publish fails after commit); returns the list of those lost."""
    publish, send = LiveService.publish, LiveService._send
    dropped: list[dict[str, Any]] = []

    async def lossy(self: LiveService, workshop_id: str, message: dict[str, Any]) -> None:
        if lost(message):
            dropped.append(message)
            return
        await publish(self, workshop_id, message)

    async def lossy_send(
        self: LiveService, workshop_id: str, message: dict[str, Any], sent: list[Any]
    ) -> None:
        # The commands' path (the wait for the hub comes after the workshop's turn).
        if lost(message):
            dropped.append(message)
            return
        await send(self, workshop_id, message, sent)

    monkeypatch.setattr(LiveService, "publish", lossy)
    monkeypatch.setattr(LiveService, "_send", lossy_send)
    return dropped


async def test_missed_events_arrive_once_in_order_then_live_ones(workshop: Workshop) -> None:
    fac, (_ann_id, _ann_token, ann) = await in_reflect(workshop)
    bob_id, bob_token = await workshop.join("Bob")
    bob = await workshop.connect(bob_token, "Bob")
    ack = await ann.do("note.create", area="now", text="Before Bob left")
    await until_seq(bob, ack["seq"])
    away_from = last_seen(bob)
    await bob.close()

    expected: list[int] = []
    for i in range(4):
        created = await ann.do("note.create", area="how", text=f"Idea {i}")
        note_id = created["result"]["note_id"]
        expected.append(created["seq"])
        expected.append((await fac.do("note.move", note_id=note_id, x=0.1 * i, y=0.5))["seq"])
    expected.append((await fac.do("spotlight.set", target={"kind": "area", "id": "how"}))["seq"])
    assert expected == list(range(away_from + 1, away_from + 1 + len(expected)))

    back = await workshop.connect(bob_token, "Bob", last_seq=away_from)
    await until_seq(back, expected[-1])
    assert not any(msg["type"] == "snapshot" for msg in back.received)
    assert seqs(back) == expected
    # Then live events, continuing without a gap.
    live = await ann.do("note.create", area="hope", text="After Bob is back")
    await until_seq(back, live["seq"])
    await back.quiet(0.2)
    assert seqs(back) == [*expected, live["seq"]]
    assert back.received[0]["participant_id"] == bob_id  # the hello: same identity
    validate(back)
    for client in (fac, ann, back):
        await client.close()


async def test_no_duplicates_when_live_events_race_the_catch_up(workshop: Workshop) -> None:
    fac, (_ann_id, _ann_token, ann) = await in_reflect(workshop)
    note_id = (await ann.do("note.create", area="how", text="Busy note"))["result"]["note_id"]
    bob_id, bob_token = await workshop.join("Bob")
    bob = await workshop.connect(bob_token, "Bob")
    await bob.until("snapshot")
    start = last_seen(bob)
    await bob.close()
    received: list[int] = []
    last = start

    async def produce(client: Client, n: int) -> int:
        final = 0
        for i in range(n):
            ack = await client.do("note.move", note_id=note_id, x=(i % 10) / 10, y=0.5)
            final = max(final, ack["seq"])
            await asyncio.sleep(0.06)  # below the 20/s rate limit
        return final

    producers = asyncio.gather(produce(ann, 25), produce(fac, 25))
    rng = random.Random(7)
    while not producers.done():
        # Reconnect while both keep writing: the catch-up and live events overlap.
        client = await workshop.connect(bob_token, "Bob", last_seq=last)
        await client.quiet(rng.uniform(0.02, 0.25))
        assert not any(msg["type"] == "snapshot" for msg in client.received)
        received.extend(seqs(client))
        last = last_seen(client, last)
        validate(client)
        await client.close()
        await asyncio.sleep(rng.uniform(0, 0.1))
    final = max(await producers)
    client = await workshop.connect(bob_token, "Bob", last_seq=last)
    if last < final:
        await until_seq(client, final)
    await client.quiet(0.2)
    received.extend(seqs(client))
    assert client.received[0]["participant_id"] == bob_id
    # Every event exactly once, in order, across all of Bob's connections.
    assert received == list(range(start + 1, final + 1))
    # And the others, connected all along, saw the same without holes or repeats.
    await until_seq(fac, final)
    assert [s for s in seqs(fac) if s > start] == received
    for c in (fac, ann, client):
        await c.close()


async def test_too_far_behind_gets_a_snapshot(
    workshop: Workshop, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(socket_module, "RESUME_LIMIT", 5)
    fac, (_ann_id, _ann_token, ann) = await in_reflect(workshop)
    bob_id, bob_token = await workshop.join("Bob")
    bob = await workshop.connect(bob_token, "Bob")
    await bob.until("snapshot")
    away_from = last_seen(bob)
    await bob.close()

    # Exactly the limit: still the events.
    for i in range(5):
        ack = await ann.do("note.create", area="how", text=f"Idea {i}")
    back = await workshop.connect(bob_token, "Bob", last_seq=away_from)
    await until_seq(back, ack["seq"])
    assert seqs(back) == list(range(away_from + 1, ack["seq"] + 1))
    away_from = last_seen(back)
    await back.close()

    # One more than the limit: a snapshot of now instead.
    for i in range(6):
        ack = await ann.do("note.create", area="hope", text=f"Hope {i}")
    back = await workshop.connect(bob_token, "Bob", last_seq=away_from)
    snapshot = await back.next()
    assert snapshot["type"] == "snapshot"
    assert snapshot["seq"] == ack["seq"]  # the workshop's seq
    cid = await fac.send("ping")
    pong = await fac.until(lambda msg: msg["type"] == "pong" and msg["cid"] == cid)
    assert pong["seq"] == ack["seq"]  # what the facilitator has seen: the same
    assert len(snapshot["notes"]) == 11
    assert snapshot["me"]["participant_id"] == bob_id
    assert not seqs(back)  # nothing replayed
    # Live events continue right after the snapshot's seq.
    live = await ann.do("note.create", area="now", text="Now")
    await until_seq(back, live["seq"])
    assert seqs(back) == [snapshot["seq"] + 1] == [live["seq"]]
    for client in (fac, ann, back):
        await client.close()


async def test_sync_returns_the_missed_events(
    workshop: Workshop, monkeypatch: pytest.MonkeyPatch
) -> None:
    fac, (_ann_id, _ann_token, ann) = await in_reflect(workshop)
    _bob_id, bob = await workshop.participant("Bob")
    await bob.until("snapshot")
    before = last_seen(bob)

    # The hub loses three events: they are committed (acked) but nobody hears them.
    lost = lose_publishes(monkeypatch, lambda msg: msg["type"] == "note.created")
    missed = [(await ann.do("note.create", area="how", text=f"Lost {i}"))["seq"] for i in range(3)]
    assert missed == [before + 1, before + 2, before + 3] and len(lost) == 3
    assert not [msg for msg in await bob.quiet(0.2) if msg.get("type") in STORED]

    # `sync` brings Bob up to date; its ack comes after the catch-up.
    cid = await bob.send("sync", last_seq=before)
    ack = await bob.reply(cid)
    assert ack["type"] == "ack"
    assert seqs(bob)[-3:] == missed
    last_event = max(i for i, msg in enumerate(bob.received) if msg.get("type") in STORED)
    assert bob.received.index(ack) > last_event
    monkeypatch.undo()

    # A sync with nothing missed sends nothing but the ack.
    ack = await bob.do("sync", last_seq=missed[-1])
    assert not [msg for msg in await bob.quiet(0.2) if msg.get("type") in STORED]

    # The facilitator did not sync: the next live event makes it fill the gap first.
    live = await ann.do("note.create", area="how", text="Heard")
    await until_seq(fac, live["seq"])
    await until_seq(bob, live["seq"])
    for client in (fac, bob):
        await client.quiet(0.1)
        tail = [s for s in seqs(client) if s > before]
        assert tail == [*missed, live["seq"]], client.name
        validate(client)

    # A sync from too far back is answered with a snapshot of now.
    monkeypatch.setattr(socket_module, "RESUME_LIMIT", 2)
    cid = await bob.send("sync", last_seq=0)
    snapshot = await bob.until("snapshot")
    assert snapshot["seq"] == live["seq"]
    assert (await bob.reply(cid))["type"] == "ack"
    for client in (fac, ann, bob):
        await client.close()


async def test_reconnect_keeps_identity_and_votes(workshop: Workshop) -> None:
    fac = await workshop.facilitator()
    ann_id, ann_token = await workshop.join("Ann")
    ann = await workshop.connect(ann_token, "Ann")
    await fac.do("workshop.start")
    await until_seq(ann, last_seen(fac))
    await ann.do("card.vote", card_id=CARD, choice="do")
    await ann.do("card.vote", card_id=CARD_2, choice="unsure")
    await ann.close()

    # Without last_seq: a snapshot, with her identity and her own votes.
    again = await workshop.connect(ann_token, "Ann")
    assert again.received[0]["participant_id"] == ann_id  # hello
    snapshot = await again.until("snapshot")
    assert snapshot["me"]["participant_id"] == ann_id
    assert snapshot["me"]["card_votes"] == {CARD: "do", CARD_2: "unsure"}
    assert snapshot["progress"]["cards"][CARD] == {"voters": 1, "who": [ann_id]}
    # Changing her vote is the same voter, not a new one.
    await again.do("card.vote", card_id=CARD, choice="dont")
    voted = await fac.until(lambda msg: msg["type"] == "card.voted" and msg["voters"] == 1)
    assert voted["participant_id"] == ann_id

    # Level votes too, in a resumed connection (with last_seq) and the next snapshot.
    await fac.do("phase.goto", index=3)
    await again.do("level.vote", level=2)
    seen = last_seen(again)
    await again.close()
    resumed = await workshop.connect(ann_token, "Ann", last_seq=seen)
    assert resumed.received[0]["participant_id"] == ann_id
    assert [msg for msg in await resumed.quiet(0.2) if msg["type"] == "snapshot"] == []
    await resumed.close()
    fresh = await workshop.connect(ann_token, "Ann")
    snapshot = await fresh.until("snapshot")
    assert snapshot["me"]["card_votes"] == {CARD: "dont", CARD_2: "unsure"}
    assert snapshot["me"]["level_votes"] == {"measurement:1": 2}
    for client in (fac, fresh):
        await client.close()


async def test_removed_participant_is_disconnected_and_refused(workshop: Workshop) -> None:
    fac = await workshop.facilitator()
    bob_id, bob_token = await workshop.join("Bob")
    phone = await workshop.connect(bob_token, "Bob")
    laptop = await workshop.connect(bob_token, "Bob")
    ann_id, ann = await workshop.participant("Ann")
    ack = await fac.do("participant.remove", participant_id=bob_id)
    for client in (phone, laptop):
        removed = await client.until("participant.removed")
        assert removed["seq"] == ack["seq"] and removed["participant_id"] == bob_id
        await asyncio.wait_for(client.ws.wait_closed(), 5)
        assert client.ws.close_code == 4003
    # Ann is unaffected, and sees Bob go offline.
    await ann.until("participant.removed")
    offline = await ann.until(
        lambda msg: msg["type"] == "participant.presence" and msg["status"] == "offline"
    )
    assert offline["participant_id"] == bob_id
    # Coming back with the same token is refused at the handshake, resume or not.
    url = f"{workshop.server.ws_base}/ws/workshops/{workshop.id}?token={bob_token}"
    for suffix in ("", f"&last_seq={ack['seq'] - 1}"):
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(url + suffix)
        assert refused.value.response.status_code == 403
    snapshot = await (await workshop.facilitator()).until("snapshot")
    assert [p["id"] for p in snapshot["participants"]] == [ann_id]
    await fac.close()
    await ann.close()


async def test_removal_heard_in_a_catch_up_still_disconnects(
    workshop: Workshop, monkeypatch: pytest.MonkeyPatch
) -> None:
    fac, (_ann_id, _ann_token, ann) = await in_reflect(workshop)
    bob_id, bob = await workshop.participant("Bob")
    await bob.until("snapshot")
    lose_publishes(monkeypatch, lambda msg: msg["type"] == "participant.removed")
    removed = await fac.do("participant.remove", participant_id=bob_id)
    monkeypatch.undo()
    # The next event makes Bob's connection fetch the lost one from the log.
    after = await ann.do("note.create", area="how", text="After the removal")
    await drain(bob)
    assert bob.ws.close_code == 4003
    assert seqs(bob)[-1] == removed["seq"]  # nothing after his removal
    assert after["seq"] not in seqs(bob)
    await until_seq(ann, after["seq"])
    for client in (fac, ann):
        await client.close()


async def test_last_seq_ahead_of_the_workshop_gets_a_snapshot(workshop: Workshop) -> None:
    fac = await workshop.facilitator()
    await fac.until("snapshot")
    ann_id, ann_token = await workshop.join("Ann")
    now = last_seen(fac) + 1  # Ann's join
    # E.g. the database was restored from an older backup: the client's seq is ahead.
    ann = await workshop.connect(ann_token, "Ann", last_seq=now + 50)
    snapshot = await ann.until("snapshot")
    assert snapshot["seq"] == now and snapshot["me"]["participant_id"] == ann_id
    ack = await fac.do("workshop.start")
    await until_seq(ann, ack["seq"])  # not dropped as "already seen"
    for client in (fac, ann):
        await client.close()


async def test_a_reconnect_storm_into_a_reopened_room_reads_the_log_once(
    workshop: Workshop, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Everyone left, the room moved on, then everyone resumes at once into a room
    that starts with nothing heard: one read of the log serves them all."""
    fac, (_ann_id, ann_token, ann) = await in_reflect(workshop)
    tokens = [ann_token] + [(await workshop.join(f"P{i}"))[1] for i in range(7)]
    clients = [ann] + [await workshop.connect(token, f"P{i}") for i, token in enumerate(tokens[1:])]
    away_from = (await ann.do("note.create", area="now", text="Before the drop"))["seq"]
    for client in clients:
        await until_seq(client, away_from)
        await client.close()
    expected = [
        (await fac.do("note.create", area="how", text=f"While away {i}"))["seq"] for i in range(3)
    ]
    await fac.close()
    await asyncio.sleep(0.2)  # the room closes with its last socket
    reads: list[int] = []
    original = snapshot_module.events_since

    async def counted(*args: Any, **kwargs: Any) -> Any:
        reads.append(args[2])
        return await original(*args, **kwargs)

    monkeypatch.setattr(socket_module, "events_since", counted)
    back = await asyncio.gather(
        *(workshop.connect(token, f"B{i}", last_seq=away_from) for i, token in enumerate(tokens))
    )
    for client in back:
        await until_seq(client, expected[-1])
        assert [s for s in seqs(client) if s > away_from] == expected
        assert not any(msg["type"] == "snapshot" for msg in client.received)
    assert reads == [away_from]
    for client in back:
        await client.close()
