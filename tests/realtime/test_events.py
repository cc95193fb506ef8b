"""Two clients for every event type: what one does, all see, in the same order.

One scenario walks a workshop through every phase kind with the facilitator, a
projector and three participants connected, and asserts for every stored event type
that every connected client receives it with the same `seq`. At the end each
client's stored events must be contiguous (no holes, no repeats) and identical in
order across clients. Every event received is validated against the wire schema
(`messages.EVENTS`), so the schema is enforced on real output, per audience.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, get_args

import pytest

from app.realtime import messages as m
from tests.realtime.conftest import Client, Workshop

CARD = "measurement-feedback-channel"
CARD_2 = "measurement-core-questions"


def event_tags() -> frozenset[str]:
    """The `type` tags of the `AnyEvent` union."""
    union = get_args(m.AnyEvent)[0]
    return frozenset(
        get_args(model.model_fields["type"].annotation)[0] for model in get_args(union)
    )


ALL_EVENTS = event_tags()
STORED_EVENTS = ALL_EVENTS - m.EPHEMERAL_EVENTS

# What `test_every_event_type_reaches_every_client` drives and checks; it asserts that
# it saw exactly these, and `test_scenario_covers_every_event_type` that these are all.
SCENARIO_EVENTS = frozenset(
    {
        "workshop.created",
        "participant.joined",
        "participant.presence",
        "anonymity.changed",
        "workshop.started",
        "timer.started",
        "timer.paused",
        "timer.extended",
        "input.locked",
        "input.unlocked",
        "card.voted",
        "votes.revealed",
        "votes.hidden",
        "spotlight.changed",
        "phase.changed",
        "card.settled",
        "level.voted",
        "level_round.opened",
        "level.recorded",
        "note.created",
        "note.edited",
        "note.moved",
        "note.dragging",
        "note.recoloured",
        "group.created",
        "group.renamed",
        "note.grouped",
        "group.deleted",
        "note.deleted",
        "dots.budget_set",
        "dot.added",
        "dot.removed",
        "participant.removed",
        "workshop.ended",
    }
)


def validate(client: Client) -> None:
    """Every message the client received conforms to the wire schema."""
    for message in client.received:
        type_ = message.get("type")
        if type_ in ALL_EVENTS:
            m.EVENTS.validate_python(message)
        elif type_ == "ack":
            m.Ack.model_validate(message)
        elif type_ == "error":
            m.ErrorMessage.model_validate(message)
        elif type_ == "pong":
            m.Pong.model_validate(message)
        else:
            assert type_ in ("hello", "snapshot"), message


def stored(client: Client) -> list[tuple[int, str]]:
    return [(msg["seq"], msg["type"]) for msg in client.received if msg["type"] in STORED_EVENTS]


def assert_contiguous(client: Client) -> None:
    seqs = [seq for seq, _type in stored(client)]
    assert seqs, client.name
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), (client.name, seqs)


def assert_ephemeral_seqs_seen(client: Client) -> None:
    """An ephemeral event's seq names a stored event the client already has."""
    have = 0
    for msg in client.received:
        if msg.get("type") in STORED_EVENTS or msg.get("type") == "snapshot":
            have = max(have, msg["seq"])
        elif msg.get("type") in m.EPHEMERAL_EVENTS:
            assert msg["seq"] <= have, (client.name, msg, have)


class Room:
    """The connected clients of one workshop, and the event types they all saw."""

    def __init__(self, *clients: Client) -> None:
        self.clients = list(clients)
        self.seen: set[str] = set()

    async def see(
        self,
        type_: str,
        seq: int | None,
        *,
        clients: list[Client] | None = None,
        check: Callable[[dict[str, Any]], bool] = lambda _m: True,
    ) -> dict[str, dict[str, Any]]:
        """Every client (or `clients`) receives `type_` with `seq`; by client name."""
        targets = self.clients if clients is None else clients

        async def one(client: Client) -> dict[str, Any]:
            return await client.until(
                lambda msg: (
                    msg.get("type") == type_
                    and (seq is None or msg.get("seq") == seq)
                    and check(msg)
                )
            )

        found = await asyncio.gather(*(one(c) for c in targets))
        for client, message in zip(targets, found, strict=True):
            m.EVENTS.validate_python(message)
            assert message["seq"] == found[0]["seq"], (client.name, message)
        self.seen.add(type_)
        return {c.name: msg for c, msg in zip(targets, found, strict=True)}

    async def did(
        self, client: Client, command: str, event: str, **fields: Any
    ) -> dict[str, dict[str, Any]]:
        """`client` sends a command; every client sees the event of the ack's seq."""
        ack = await client.do(command, **fields)
        assert isinstance(ack["seq"], int), ack
        seen = await self.see(event, ack["seq"])
        sender = seen[client.name]
        assert sender["cid"] == ack["cid"], sender  # the sender's own event echoes cid
        return seen


def test_scenario_covers_every_event_type() -> None:
    """Fails when an event type is added to `AnyEvent` without a test that drives it."""
    assert SCENARIO_EVENTS == ALL_EVENTS, {
        "not covered": sorted(ALL_EVENTS - SCENARIO_EVENTS),
        "not an event": sorted(SCENARIO_EVENTS - ALL_EVENTS),
    }
    assert m.EPHEMERAL_EVENTS <= ALL_EVENTS


async def test_every_event_type_reaches_every_client(workshop: Workshop) -> None:
    fac = await workshop.connect(workshop.facilitator_token, "fac", last_seq=0)
    proj = await workshop.connect(workshop.facilitator_token, "proj", last_seq=0, view="projector")
    room = Room(fac, proj)
    # Resuming from 0 replays the log from its first event.
    created = await room.see("workshop.created", 1)
    assert created["fac"]["title"] == "Live test"

    # Joining is HTTP; the join reaches the room when the participant connects.
    ann_id, ann = await workshop.participant("Ann")
    joined = await room.see("participant.joined", 2)
    assert all(e["participant"]["id"] == ann_id for e in joined.values())
    assert joined["proj"]["participant"]["display_name"] == "Ann"
    room.clients.append(ann)
    bob_id, bob = await workshop.participant("Bob")
    await room.see("participant.joined", 3)
    room.clients.append(bob)
    cat_id, cat = await workshop.participant("Cat")
    await room.see("participant.joined", 4)
    for client in (fac, ann, bob):
        online = await client.until(
            lambda msg: msg["type"] == "participant.presence" and msg["participant_id"] == cat_id
        )
        assert online["status"] == "online" and online["seq"] == 4
    room.clients.append(cat)
    for client in (ann, bob, cat):
        snapshot = await client.until("snapshot")
        assert snapshot["me"]["participant_id"] in (ann_id, bob_id, cat_id)
    everyone = list(room.clients)

    # Lobby.
    await room.did(fac, "anonymity.set", "anonymity.changed", anonymous=False)
    assert (await ann.refused("card.vote", card_id=CARD, choice="do"))["code"] == "not_started"
    started = await room.did(fac, "workshop.start", "workshop.started")
    assert started["Ann"]["phase"]["key"] == "measurement.sort"

    # Sort (phase 1): timer, lock, votes, reveal, spotlight.
    timer = await room.did(fac, "timer.start", "timer.started")
    assert timer["Bob"]["timer"]["running"] and timer["Bob"]["timer"]["remaining_s"] == 8 * 60
    paused = await room.did(fac, "timer.pause", "timer.paused")
    assert not paused["Ann"]["timer"]["running"]
    extended = await room.did(fac, "timer.extend", "timer.extended", seconds=60)
    assert extended["Ann"]["timer"]["remaining_s"] == paused["Ann"]["timer"]["remaining_s"] + 60
    await room.did(fac, "input.lock", "input.locked")
    assert (await ann.refused("card.vote", card_id=CARD, choice="do"))["code"] == "locked"
    await room.did(fac, "input.unlock", "input.unlocked")
    assert (await fac.refused("card.vote", card_id=CARD, choice="do"))["code"] == (
        "participants_only"
    )
    assert (await ann.refused("phase.next"))["code"] == "forbidden"

    voted = await room.did(ann, "card.vote", "card.voted", card_id=CARD, choice="do")
    for message in voted.values():
        assert "choice" not in message  # never sent, to anyone
        assert message["participant_id"] == ann_id and message["voters"] == 1
    voted = await room.did(bob, "card.vote", "card.voted", card_id=CARD, choice="dont")
    assert {msg["voters"] for msg in voted.values()} == {2}
    await room.did(cat, "card.vote", "card.voted", card_id=CARD_2, choice="unsure")
    revealed = await room.did(fac, "votes.reveal", "votes.revealed")
    for message in revealed.values():
        assert message["scope"] == "cards" and message["function_id"] == "measurement"
        tally = next(c for c in message["results"]["cards"] if c["card_id"] == CARD)
        assert (tally["do"], tally["dont"], tally["voters"]) == (1, 1, 2)
    assert (await ann.refused("card.vote", card_id=CARD, choice="dont"))["code"] == "revealed"
    hidden = await room.did(fac, "votes.hide", "votes.hidden")
    assert hidden["proj"]["scope"] == "cards"
    spot = await room.did(
        fac, "spotlight.set", "spotlight.changed", target={"kind": "card", "id": CARD}
    )
    assert spot["Ann"]["target"] == {"kind": "card", "id": CARD}

    # Discuss (phase 2): settle a card.
    changed = await room.did(fac, "phase.next", "phase.changed")
    assert changed["Bob"]["phase"]["kind"] == "discuss"
    assert not changed["Bob"]["timer"]["running"]
    settled = await room.did(
        fac, "card.settle", "card.settled", card_id=CARD, practised=True, note="Agreed"
    )
    assert settled["Ann"]["function_id"] == "measurement" and settled["Ann"]["practised"]

    # Level vote (phase 3): two rounds, then the recorded level.
    changed = await room.did(fac, "phase.goto", "phase.changed", index=3)
    assert changed["proj"]["phase"]["kind"] == "level_vote"
    level = await room.did(ann, "level.vote", "level.voted", level=1)
    for message in level.values():
        assert "level" not in message  # private until revealed
        assert message["participant_id"] == ann_id and message["round"] == 1
    await room.did(bob, "level.vote", "level.voted", level=2)
    revealed = await room.did(fac, "votes.reveal", "votes.revealed")
    assert revealed["Ann"]["scope"] == "level" and revealed["Ann"]["round"] == 1
    opened = await room.did(fac, "level_round.open", "level_round.opened")
    assert opened["Bob"]["round"] == 2
    hidden = await room.did(fac, "votes.hide", "votes.hidden")
    assert hidden["Bob"]["scope"] == "level" and hidden["Bob"]["round"] == 2
    recorded = await room.did(
        fac, "level.record", "level.recorded", function_id="measurement", level=1, note="ok"
    )
    assert recorded["Ann"]["level_name"] == "Established"
    assert set(recorded["Ann"]["signals"]) == {"card_level", "voted"}

    # Reflect (phase 4): notes and groups.
    await room.did(fac, "phase.next", "phase.changed")
    created_note = await room.did(
        ann, "note.create", "note.created", area="how", text="Weekly review", x=0.2, y=0.3
    )
    note = created_note["Bob"]["note"]
    assert note["author_id"] == ann_id and note["area"] == "how" and note["dots"] == 0
    n1 = note["id"]
    edited = await room.did(ann, "note.edit", "note.edited", note_id=n1, text="Weekly CX review")
    assert edited["Cat"]["text"] == "Weekly CX review"
    moved = await room.did(bob, "note.move", "note.moved", note_id=n1, x=0.6, y=0.7)
    assert (moved["fac"]["x"], moved["fac"]["y"], moved["fac"]["area"]) == (0.6, 0.7, "how")

    # A drag preview: everyone sees it with the last stored seq, and nothing is stored.
    last = moved["fac"]["seq"]
    ack = await bob.do("note.drag", note_id=n1, x=0.65, y=0.75)
    assert ack["seq"] is None
    drag = await room.see("note.dragging", last)
    assert drag["Ann"]["x"] == 0.65 and drag["Ann"]["actor"] == bob_id

    recoloured = await room.did(ann, "note.recolour", "note.recoloured", note_id=n1, colour="pink")
    assert recoloured["proj"]["colour"] == "pink"
    assert recoloured["proj"]["seq"] == last + 1  # the drag took no seq
    assert (await bob.refused("note.edit", note_id=n1, text="mine"))["code"] == "not_yours"
    n2 = (await bob.do("note.create", area="how", text="Hire a researcher"))["result"]["note_id"]
    await room.see("note.created", None, check=lambda msg: msg["note"]["id"] == n2)
    group = await room.did(
        fac, "group.create", "group.created", area="how", label="Do", note_ids=[n1]
    )
    g1 = group["Ann"]["group"]["id"]
    assert group["Ann"]["note_ids"] == [n1] and group["Ann"]["group"]["label"] == "Do"
    renamed = await room.did(fac, "group.rename", "group.renamed", group_id=g1, label="Do next")
    assert renamed["Cat"]["label"] == "Do next"
    grouped = await room.did(ann, "note.group", "note.grouped", note_id=n2, group_id=g1)
    assert grouped["Bob"]["group_id"] == g1
    await room.did(fac, "group.delete", "group.deleted", group_id=g1)
    n3 = (await cat.do("note.create", area="now", text="To delete"))["result"]["note_id"]
    await room.see("note.created", None, check=lambda msg: msg["note"]["id"] == n3)
    deleted = await room.did(cat, "note.delete", "note.deleted", note_id=n3)
    assert deleted["Ann"]["note_id"] == n3

    # Prioritise (phase 5): dot votes on the "how" notes.
    changed = await room.did(fac, "phase.next", "phase.changed")
    assert changed["Ann"]["phase"]["kind"] == "prioritise"
    budget = await room.did(fac, "dots.set_budget", "dots.budget_set", budget=2)
    assert budget["Bob"] == {**budget["Bob"], "phase_key": "measurement.prioritise", "budget": 2}
    dot = await room.did(ann, "dot.add", "dot.added", note_id=n1)
    assert dot["Bob"]["participant_id"] == ann_id and dot["Bob"]["dots"] == 1
    assert (await ann.do("dot.add", note_id=n1))["result"] == {"dots_left": 0}
    await room.see("dot.added", None, check=lambda msg: msg["dots"] == 2)
    assert (await ann.refused("dot.add", note_id=n2))["code"] == "no_dots_left"
    undot = await room.did(ann, "dot.remove", "dot.removed", note_id=n1)
    assert undot["Cat"]["dots"] == 1

    # Presence is ephemeral: it carries the last stored seq.
    last = undot["Cat"]["seq"]
    assert (await bob.do("presence.set", status="away"))["seq"] is None
    away = await room.see("participant.presence", last, check=lambda msg: msg["status"] == "away")
    assert away["fac"]["participant_id"] == bob_id

    # Removing a participant: everyone sees it, then the removed one is disconnected.
    removed = await room.did(
        fac, "participant.remove", "participant.removed", participant_id=cat_id
    )
    assert removed["Cat"]["participant_id"] == cat_id
    await asyncio.wait_for(cat.ws.wait_closed(), 5)
    assert cat.ws.close_code == 4003
    room.clients.remove(cat)
    offline = await room.see(
        "participant.presence",
        removed["fac"]["seq"],
        check=lambda msg: msg["participant_id"] == cat_id and msg["status"] == "offline",
    )
    assert len(offline) == 4

    await room.did(fac, "workshop.end", "workshop.ended")
    assert (await ann.refused("note.create", area="how", text="late"))["code"] == "ended"

    assert room.seen == SCENARIO_EVENTS
    for client in room.clients:
        await client.quiet(0.2)  # anything that should not arrive has time to
    for client in everyone:
        validate(client)
        assert_contiguous(client)
        assert_ephemeral_seqs_seen(client)
    # The same stored events in the same order for everyone connected from the start
    # of the participants' time (Cat's ends at her removal).
    reference = [e for e in stored(fac) if e[0] > 4]
    assert [e for e in stored(proj) if e[0] > 4] == reference
    assert stored(ann)[-len(reference) :] == reference
    assert stored(bob)[-len(reference) :] == reference
    assert stored(cat) == reference[: len(stored(cat))]
    assert stored(cat)[-1][1] == "participant.removed"
    assert (
        stored(fac)[:4]
        == stored(proj)[:4]
        == [
            (1, "workshop.created"),
            (2, "participant.joined"),
            (3, "participant.joined"),
            (4, "participant.joined"),
        ]
    )
    for client in everyone:
        await client.close()


async def test_presence_names_the_latest_seq(workshop: Workshop) -> None:
    """Joining is HTTP and publishes nothing: connecting makes the room hear of it,
    and later presence events never name an older seq than the room has seen."""
    fac = await workshop.facilitator()
    assert (await fac.until("snapshot"))["seq"] == 1
    ann_id, ann = await workshop.participant("Ann")
    joined = await fac.until("participant.joined")
    online = await fac.until("participant.presence")
    assert joined["seq"] == online["seq"] == 2 and online["status"] == "online"
    assert fac.received.index(joined) < fac.received.index(online)
    await ann.close()
    offline = await fac.until("participant.presence")
    assert (offline["participant_id"], offline["status"], offline["seq"]) == (ann_id, "offline", 2)
    validate(fac)
    await fac.close()


@pytest.mark.parametrize("view", ["participant", "projector"])
async def test_anonymous_mode_hides_who_from_all_but_the_facilitator(
    workshop: Workshop, view: str
) -> None:
    fac = await workshop.facilitator()
    await fac.do("anonymity.set", anonymous=True)
    ann_id, ann = await workshop.participant("Ann")
    bob_id, bob = await workshop.participant("Bob")
    watcher = (
        bob
        if view == "participant"
        else await workshop.connect(workshop.facilitator_token, "proj", view="projector")
    )
    room = Room(fac, ann, watcher)
    # Joins: only the facilitator sees the name.
    joined = await room.see(
        "participant.joined",
        None,
        clients=[fac, ann],
        check=lambda msg: msg["participant"]["id"] == bob_id,
    )
    assert joined["fac"]["participant"]["display_name"] == "Bob"
    assert joined["Ann"]["participant"] == {
        "id": bob_id,
        "display_name": None,
        "organisation": None,
    }
    assert joined["Ann"]["actor"] is None

    await room.did(fac, "workshop.start", "workshop.started")
    voted = await room.did(ann, "card.vote", "card.voted", card_id=CARD, choice="do")
    assert voted["fac"]["participant_id"] == ann_id and voted["fac"]["actor"] == ann_id
    for name in ("Ann", watcher.name):
        assert voted[name]["participant_id"] is None and voted[name]["actor"] is None
    assert all("choice" not in msg for msg in voted.values())

    await room.did(fac, "phase.goto", "phase.changed", index=3)
    level = await room.did(ann, "level.vote", "level.voted", level=2)
    assert level["fac"]["participant_id"] == ann_id
    assert level[watcher.name]["participant_id"] is None
    assert all("level" not in msg for msg in level.values())

    await room.did(fac, "phase.goto", "phase.changed", index=4)
    note = await room.did(ann, "note.create", "note.created", area="how", text="Anonymous idea")
    for message in note.values():  # authors are hidden from everyone, the facilitator too
        assert message["note"]["author_id"] is None and message["actor"] is None
    n1 = note["fac"]["note"]["id"]
    moved = await room.did(ann, "note.move", "note.moved", note_id=n1, x=0.1, y=0.1)
    assert all(msg["actor"] is None for msg in moved.values())

    await room.did(fac, "phase.next", "phase.changed")
    dot = await room.did(ann, "dot.add", "dot.added", note_id=n1)
    assert dot["fac"]["participant_id"] == ann_id
    assert dot[watcher.name]["participant_id"] is None and dot[watcher.name]["dots"] == 1

    for client in room.clients:
        validate(client)
    for client in {id(c): c for c in (fac, ann, bob, watcher)}.values():
        await client.close()


async def test_anonymous_snapshot_hides_names_and_voters(workshop: Workshop) -> None:
    fac = await workshop.facilitator()
    await fac.do("anonymity.set", anonymous=True)
    await fac.do("workshop.start")
    ann_id, ann_token = await workshop.join("Ann")
    ann = await workshop.connect(ann_token, "ann")
    await ann.until("snapshot")
    await ann.do("card.vote", card_id=CARD, choice="do")
    await ann.close()

    again = await workshop.connect(ann_token, "ann2")
    snapshot = await again.until("snapshot")
    assert snapshot["workshop"]["anonymous"] is True
    assert snapshot["participants"] == [
        {"id": ann_id, "display_name": None, "organisation": None, "presence": "online"}
    ]
    assert snapshot["progress"]["cards"][CARD] == {"voters": 1, "who": None}
    assert snapshot["me"]["card_votes"] == {CARD: "do"}  # her own vote, only to her
    proj = await workshop.facilitator(view="projector")
    assert (await proj.until("snapshot"))["progress"]["cards"][CARD]["who"] is None
    full = await workshop.facilitator()
    facsnap = await full.until("snapshot")
    assert facsnap["progress"]["cards"][CARD] == {"voters": 1, "who": [ann_id]}
    assert facsnap["participants"][0]["display_name"] == "Ann"
    assert facsnap["me"] is None
    for client in (fac, again, proj, full):
        await client.close()
