"""Ticks: events heard close together go out as one frame per recipient.

The room sends the first event after a quiet spell at once and holds what follows
until the next tick (the next loop turn while the worker's fan-out budget lasts, later
when it is spent); then one frame per audience: one event as it is, or a `batch`.
Drag previews and presence keep only the latest per note/participant; vote progress
keeps only the last total per target for audiences that are not shown who voted.
Unit tests drive a `Room` directly (several messages within one loop turn are one
tick, whatever the machine's speed); the others go through a real server and check
that nothing is lost, repeated or reordered.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, Literal, cast

from starlette.websockets import WebSocket

from app.realtime import messages as m
from app.realtime.gate import DragGate
from app.realtime.rooms import (
    HOLE_WAIT_S,
    LATE_FRESH_S,
    LATE_LIMIT_S,
    MAX_HOLD_S,
    Connection,
    Frame,
    Pacer,
    Room,
)
from app.realtime.socket import _whole
from app.services.live.context import Actor
from tests.realtime.conftest import Client, Workshop

CARD = "measurement-feedback-channel"
SORT, REFLECT = 1, 4


def event(seq: int, type_: str, **fields: Any) -> dict[str, Any]:
    return {"type": type_, "seq": seq, "actor": None, "at": "2026-01-01T00:00:00+00:00", **fields}


def voted(seq: int, voters: int, pid: str = "p1") -> dict[str, Any]:
    return event(
        seq,
        "card.voted",
        actor=pid,
        function_id="measurement",
        card_id=CARD,
        participant_id=pid,
        voters=voters,
    )


def dragging(seq: int, note: str, x: float) -> dict[str, Any]:
    return event(seq, "note.dragging", actor="p1", note_id=note, x=x, y=0.5)


def conn(audience: m.Audience, fmt: str = "json", pid: str | None = None) -> Connection:
    role: Literal["facilitator", "participant"] = (
        "participant" if audience == "participant" else "facilitator"
    )
    actor = Actor(role, "w1", participant_id=pid, facilitator_id=None if pid else "f1")
    form: Literal["json", "html"] = "html" if fmt == "html" else "json"
    return Connection(ws=cast(WebSocket, None), actor=actor, audience=audience, fmt=form)


def frames(c: Connection) -> list[Frame]:
    out = []
    while not c.queue.empty():
        kind, item = c.queue.get_nowait()
        if kind == "event":
            out.append(item)
    return out


def room_with(*conns: Connection, anonymous: bool = False, pacer: Pacer | None = None) -> Room:
    room = Room("w1", anonymous, 10, {}, pacer)
    for c in conns:
        room.connections.add(c)
        c.room = room
    return room


async def test_drags_within_a_tick_reach_others_as_one_update_at_the_final_position() -> None:
    watcher = conn("participant", pid="p2")
    room = room_with(watcher)
    for i in range(10):
        room.on_message(dragging(10, "n1", i / 10))
    room.on_message(dragging(10, "n2", 0.9))
    room.flush()
    room.close()
    sent = frames(watcher)
    # The first preview went at once; the other nine of n1 became one, beside n2's.
    assert [json.loads(f.text)["x"] for f in sent[:1]] == [0.0]
    batch = json.loads(sent[1].text)
    assert batch["type"] == "batch" and batch["from"] is None
    assert [(e["note_id"], e["x"]) for e in batch["events"]] == [("n1", 0.9), ("n2", 0.9)]
    assert len(sent) == 2


async def test_a_drag_heard_after_the_stored_move_stays_after_it() -> None:
    watcher = conn("facilitator")
    room = room_with(watcher)
    room.on_message(event(11, "input.unlocked"))  # opens a tick
    room.on_message(dragging(11, "n1", 0.1))
    room.on_message(event(12, "note.moved", note_id="n1", x=0.2, y=0.2, area="now"))
    room.on_message(dragging(12, "n1", 0.3))
    room.flush()
    room.close()
    batch = json.loads(frames(watcher)[1].text)
    assert [(e["type"], e.get("x")) for e in batch["events"]] == [
        ("note.moved", 0.2),
        ("note.dragging", 0.3),
    ]


async def test_a_batch_keeps_seq_order_and_its_range() -> None:
    fac, part = conn("facilitator"), conn("participant", pid="p2")
    room = room_with(fac, part)
    for seq in range(11, 16):
        room.on_message(voted(seq, seq - 10, pid=f"p{seq}"))
    room.flush()
    room.close()
    for c in (fac, part):
        first, batch = frames(c)
        assert json.loads(first.text)["seq"] == 11
        body = json.loads(batch.text)
        m.Batch.model_validate(body)
        assert (body["from"], body["seq"]) == (12, 15)
        # Not anonymous: everyone is shown who voted, so every event is kept.
        assert [e["seq"] for e in body["events"]] == [12, 13, 14, 15]
        assert (batch.first, batch.last, batch.clean) == (12, 15, True)


async def test_vote_totals_collapse_for_audiences_shown_totals_only() -> None:
    fac, part = conn("facilitator"), conn("participant", pid="p2")
    proj, page = conn("projector"), conn("participant", "html", pid="p3")
    room = room_with(fac, part, proj, page, anonymous=True)
    room.on_message(event(11, "input.unlocked"))
    for seq in range(12, 17):
        room.on_message(voted(seq, seq - 11, pid=f"p{seq}"))
    room.flush()
    room.close()
    full = json.loads(frames(fac)[1].text)
    assert [e["voters"] for e in full["events"]] == [1, 2, 3, 4, 5]
    for c in (part, proj):
        body = json.loads(frames(c)[1].text)
        assert (body["from"], body["seq"]) == (12, 16)  # the range still covers all five
        assert [(e["seq"], e["voters"], e["participant_id"]) for e in body["events"]] == [
            (16, 5, None)
        ]
    html = frames(page)[1]
    assert html.text.count('data-kind="progress"') == 1 and 'data-text="5 voted"' in html.text
    # The page resumes from the batch's last seq: its last live-seq element names it.
    assert html.text.endswith(
        '<div id="live-seq" hx-swap-oob="outerHTML" data-seq="16" hidden></div>'
    )


async def test_the_writer_sends_a_frame_whole_only_when_it_follows_on() -> None:
    part = conn("participant", pid="p2")
    room = room_with(part)
    room.on_message(event(11, "input.unlocked"))
    room.on_message(event(12, "input.locked"))
    room.on_message(event(13, "participant.removed", participant_id="p2"))
    room.on_message(event(14, "input.unlocked"))
    room.flush()
    room.close()
    _lead, batch = frames(part)
    part.last_seq = 11
    assert not _whole(part, batch)  # its own removal: sent event by event, then closed
    other = conn("participant", pid="p9")
    other.last_seq = 11
    assert _whole(other, batch)
    other.last_seq = 10
    assert not _whole(other, batch)  # a gap: fetched from the log first
    other.last_seq = 12
    assert not _whole(other, batch)  # an overlap: no repeats


async def test_replies_wait_for_the_events_held_for_the_tick() -> None:
    part = conn("participant", pid="p2")
    room = room_with(part)
    room.on_message(event(11, "input.unlocked"))
    room.on_message(event(12, "input.locked"))  # held
    part.control(m.Ack(cid="c1", seq=12).model_dump())
    assert [kind for kind, _ in part.queue._queue] == ["event"]  # type: ignore[attr-defined]
    room.flush()
    room.close()
    kinds = [part.queue.get_nowait()[0] for _ in range(part.queue.qsize())]
    assert kinds == ["event", "event", "text"]


def test_the_drag_gate_admits_only_what_it_knows() -> None:
    gate = DragGate()
    assert not gate.admits("p1", "n1")  # not loaded: the database decides
    gate.loaded, gate.seq, gate.state, gate.phase_kind = True, 10, "running", "reflect"
    gate.hear(event(11, "note.created", note={"id": "n1"}))
    assert gate.admits("p1", "n1") and gate.admits(None, "n1")
    assert not gate.admits("p1", "n2")
    gate.hear(event(12, "input.locked"))
    assert not gate.admits("p1", "n1") and gate.admits(None, "n1")
    gate.hear(event(13, "input.unlocked"))
    gate.hear(event(14, "participant.removed", participant_id="p1"))
    assert not gate.admits("p1", "n1") and gate.admits("p2", "n1")
    gate.hear(event(15, "phase.changed", phase={"kind": "prioritise"}))
    assert not gate.admits("p2", "n1") and gate.admits(None, "n1")
    gate.hear(event(16, "phase.changed", phase={"kind": "reflect"}))
    gate.hear(event(17, "note.deleted", note_id="n1"))
    assert not gate.admits("p2", "n1")
    gate.hear(event(19, "note.created", note={"id": "n3"}))  # 18 was never heard
    assert not gate.loaded and not gate.admits("p2", "n3")


# --- through a server ------------------------------------------------------------------


def covered(client: Client) -> list[int]:
    """The stored seqs a client received, counting those a batch covers without
    sending (totals superseded within it)."""
    out: list[int] = []
    for msg in client.received:
        if msg.get("type") in m.EPHEMERAL_EVENTS or msg.get("type") not in _STORED:
            continue
        out.append(msg["seq"])
    for batch in client.batches:
        stored = [e["seq"] for e in batch["events"] if e["type"] in _STORED]
        if batch["from"] is not None:
            out += [s for s in range(batch["from"], max(stored) + 1) if s not in stored]
    return sorted(out)


_STORED = {
    t
    for t in m.EVENTS.json_schema()["discriminator"]["mapping"]  # every event type
    if t not in m.EPHEMERAL_EVENTS
}


async def test_concurrent_votes_arrive_complete_in_order_with_right_totals(
    workshop: Workshop,
) -> None:
    fac = await workshop.facilitator()
    await fac.do("anonymity.set", anonymous=True)
    voters = [await workshop.participant(f"P{i}") for i in range(6)]
    watcher_id, watcher = await workshop.participant("Watcher")
    await fac.do("workshop.start")
    start = (await fac.do("phase.goto", index=SORT))["seq"]
    acks = await asyncio.gather(
        *(c.do("card.vote", card_id=CARD, choice="do") for _pid, c in voters)
    )
    last = max(a["seq"] for a in acks)
    totals: dict[str, dict[int, int]] = {}
    for client in (fac, watcher):
        await client.until(lambda msg, last=last: msg.get("seq") == last and "voters" in msg)
        seqs = [s for s in covered(client) if s > start]
        assert seqs == list(range(start + 1, last + 1)), (client.name, seqs)
        votes = [msg for msg in client.received if msg.get("type") == "card.voted"]
        assert votes[-1]["seq"] == last
        totals[client.name] = {v["seq"]: v["voters"] for v in votes}
        for batch in client.batches:
            m.Batch.model_validate(batch)
    # What the watcher kept is the total as of that seq (the facilitator has them all).
    assert all(totals["fac"][seq] == n for seq, n in totals["Watcher"].items())
    # The facilitator is shown who voted: every vote reaches it.
    fac_votes = [msg for msg in fac.received if msg.get("type") == "card.voted"]
    assert sorted(v["participant_id"] for v in fac_votes) == sorted(p for p, _c in voters)
    assert watcher_id not in {v["participant_id"] for v in fac_votes}
    for _pid, c in voters:
        await c.close()
    await watcher.close()
    await fac.close()


async def test_many_drags_end_at_the_final_position_before_the_move(workshop: Workshop) -> None:
    fac = await workshop.facilitator()
    await fac.do("workshop.start")
    await fac.do("phase.goto", index=REFLECT)
    _ann_id, ann = await workshop.participant("Ann")
    _bob_id, bob = await workshop.participant("Bob")
    note = (await ann.do("note.create", area="now", text="Drag me"))["result"]["note_id"]
    cids = [await ann.send("note.drag", note_id=note, x=i / 40, y=0.5) for i in range(30)]
    for cid in cids:
        assert (await ann.reply(cid))["type"] == "ack"
    moved = await ann.do("note.move", note_id=note, x=0.9, y=0.9)
    await bob.until(lambda msg: msg.get("seq") == moved["seq"])
    drags = [msg for msg in bob.received if msg.get("type") == "note.dragging"]
    assert 1 <= len(drags) <= 30
    assert (drags[-1]["x"], drags[-1]["y"]) == (29 / 40, 0.5)
    # No preview after the stored move (it would put the note back where it was).
    types = [msg.get("type") for msg in bob.received]
    assert "note.dragging" not in types[types.index("note.moved") :]
    # A drag of an unknown note still gets the database's exact refusal.
    assert (await ann.refused("note.drag", note_id="nope", x=0.1, y=0.1))["code"] == "unknown_note"
    await ann.close()
    await bob.close()
    await fac.close()


async def test_resumes_come_from_the_rooms_ring_while_it_covers_them() -> None:
    room = room_with(conn("facilitator"))
    for seq in range(11, 16):
        room.on_message(event(seq, "input.locked", cid=f"c{seq}", ts=1.0))
    room.on_message(dragging(15, "n1", 0.5))  # ephemeral: never kept
    room.close()
    replayed = room.replay(12, 0, 1000)
    assert replayed is not None
    assert [e["seq"] for e in replayed] == [13, 14, 15]
    # As the log replays them: the live delivery's cid and ts are not repeated.
    assert all(e["cid"] is None and e["ts"] is None for e in replayed)
    assert room.replay(15, 0, 1000) == []
    assert room.replay(9, 0, 1000) is None  # older than the ring: the log
    assert room.replay(16, 0, 1000) is None  # ahead of anything heard: the log (or a snapshot)
    assert room.replay(12, 16, 1000) is None  # must reach a seq not heard yet: the log
    assert room.replay(12, 0, 2) is None  # more than the resume limit: a snapshot
    room.on_message(event(18, "input.unlocked"))  # 16 and 17 are not heard (yet)
    # Held aside while the room waits for them: the ring still ends at 15.
    assert [e["seq"] for e in room.replay(14, 0, 1000) or []] == [15]
    assert room.replay(17, 0, 1000) is None
    await asyncio.sleep(HOLE_WAIT_S + 0.05)  # they never come: the ring starts again
    assert room.replay(14, 0, 1000) is None
    assert [e["seq"] for e in room.replay(17, 0, 1000) or []] == [18]
    room.on_message({"type": "hub.resync"})
    room.close()
    assert room.replay(17, 0, 1000) is None


async def test_events_read_from_the_log_seed_the_ring_below_what_it_heard() -> None:
    room = room_with(conn("facilitator"))
    logged = [{**event(seq, "input.locked"), "cid": None, "ts": None} for seq in range(5, 9)]
    room.seed(logged)  # an empty ring takes them
    assert [e["seq"] for e in room.replay(4, 8, 1000) or []] == [5, 6, 7, 8]
    room.on_message(event(9, "input.unlocked"))  # heard next: appended
    assert [e["seq"] for e in room.replay(7, 9, 1000) or []] == [8, 9]
    # Below what it holds, reaching its oldest: joined underneath (duplicates dropped).
    room.seed([{**event(seq, "input.locked"), "cid": None, "ts": None} for seq in range(2, 7)])
    assert [e["seq"] for e in room.replay(1, 9, 1000) or []] == list(range(2, 10))
    # A hole between them and the ring: not kept.
    room.seed([{**event(0, "input.locked"), "cid": None, "ts": None}])
    assert room.replay(-1, 9, 1000) is None
    assert [e["seq"] for e in room.replay(1, 9, 1000) or []] == list(range(2, 10))
    room.close()


async def next_frames(c: Connection) -> list[Frame]:
    """The frames of the connection's next tick (waits up to 5 s for them)."""
    deadline = asyncio.get_running_loop().time() + 5
    sent: list[Frame] = []
    while not sent and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.005)
        sent = frames(c)
    return sent


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_pacer_sends_at_once_within_its_budget_and_waits_beyond_it() -> None:
    clock = Clock()
    pacer = Pacer(rate=1000, burst=100, clock=clock)
    assert pacer.wait() == 0
    pacer.spend(130)  # 30 frames over: 30 ms at 1,000 frames a second
    assert abs(pacer.wait() - 0.03) < 1e-9
    clock.now += 0.01
    assert abs(pacer.wait() - 0.02) < 1e-9
    clock.now += 0.025
    assert pacer.wait() == 0
    clock.now += 60  # a long quiet spell refills no more than the burst
    pacer.spend(101)
    assert abs(pacer.wait() - 0.001) < 1e-9
    pacer.spend(10_000)
    assert pacer.wait() == MAX_HOLD_S  # never held longer than this


async def test_a_room_within_budget_sends_the_rest_on_the_next_loop_turn() -> None:
    watcher = conn("facilitator")
    room = room_with(watcher, pacer=Pacer(rate=1000, burst=100, clock=Clock()))
    room.on_message(event(11, "input.unlocked"))  # at once
    room.on_message(event(12, "input.locked"))  # held for the next turn
    room.on_message(event(13, "input.unlocked"))
    assert [f.last for f in frames(watcher)] == [11]
    for _ in range(3):
        await asyncio.sleep(0)
    assert [(f.first, f.last) for f in frames(watcher)] == [(12, 13)]
    room.close()


async def test_a_room_beyond_budget_holds_even_the_first_event_until_the_tick() -> None:
    clock = Clock()
    pacer = Pacer(rate=1000, burst=10, clock=clock)
    pacer.spend(30)  # spent by other rooms: 20 ms to wait
    watcher = conn("facilitator")
    room = room_with(watcher, pacer=pacer)
    room.on_message(event(11, "input.unlocked"))
    room.on_message(event(12, "input.locked"))
    assert frames(watcher) == [] and room.holding()
    for _ in range(3):
        await asyncio.sleep(0)
    assert frames(watcher) == []  # not on the next turn: the budget is spent
    # The room's tick is due when the budget is back (its clock here does not move,
    # so the wait stays 20 ms of the loop's time); both events go as one frame.
    sent = await next_frames(watcher)
    assert [(f.first, f.last) for f in sent] == [(11, 12)]
    room.close()


def test_the_pacer_holds_while_ticks_run_late_and_forgets_an_old_lateness() -> None:
    clock = Clock()
    pacer = Pacer(rate=1000, burst=100, clock=clock)
    pacer.late(0.005)  # a little late: not behind
    assert pacer.wait() == 0
    pacer.late(0.03)  # behind: hold for as long
    assert abs(pacer.wait() - 0.03) < 1e-9
    pacer.late(0.2)
    assert pacer.wait() == MAX_HOLD_S
    clock.now += LATE_FRESH_S + 0.01  # no tick since: the lateness is forgotten
    assert pacer.wait() == 0
    pacer.late(LATE_LIMIT_S)  # at the limit is not behind
    assert pacer.wait() == 0


async def test_a_room_whose_tick_ran_late_holds_the_next_event_then_sends_it() -> None:
    pacer = Pacer()  # the real clock, as the loop's
    watcher = conn("facilitator")
    room = room_with(watcher, pacer=pacer)
    room.on_message(event(11, "input.unlocked"))  # at once; its tick is armed
    assert [f.last for f in frames(watcher)] == [11]
    time.sleep(0.04)  # the worker is busy: the tick runs about 40 ms late
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert pacer.wait() > LATE_LIMIT_S
    room.on_message(event(12, "input.locked"))  # a new quiet spell, but the loop is behind
    assert frames(watcher) == [] and room.holding()
    sent = await next_frames(watcher)
    assert [(f.first, f.last) for f in sent] == [(12, 12)]
    room.close()


async def test_an_event_heard_ahead_of_a_missing_one_waits_for_it_then_both_go_in_order() -> None:
    """With several workers a room can hear seq 12 before 11: it holds 12 (and
    anything after it) until 11 arrives, then sends them in seq order as one frame
    that follows on, so no writer fetches from the log."""
    watcher = conn("facilitator")
    watcher.last_seq = 10
    room = room_with(watcher)  # heard up to 10
    room.on_message(event(12, "input.locked"))
    room.on_message(dragging(12, "n1", 0.4))  # names 12: after it
    await asyncio.sleep(0.02)
    assert frames(watcher) == [] and room.holding()
    room.on_message(event(11, "input.unlocked"))
    [frame] = await next_frames(watcher)
    assert (frame.first, frame.last, frame.clean, frame.need) == (11, 12, True, 0)
    assert [e["seq"] for e in json.loads(frame.text)["events"]] == [11, 12, 12]
    assert _whole(watcher, frame)
    assert [e["seq"] for e in room.replay(10, 12, 1000) or []] == [11, 12]
    room.on_message(event(13, "input.unlocked"))  # no hole: at once
    assert [f.last for f in frames(watcher)] == [13]
    room.close()


async def test_the_drag_gate_hears_stored_events_in_seq_order() -> None:
    """A worker hears its own events at once and another's a moment later: the note
    created at 11 must count for drags once 12 (heard first) is in, not make the
    gate forget everything; and while 11 is missing the room says it is waiting."""
    room = room_with(conn("facilitator"))
    gate = room.gate
    gate.loaded, gate.seq, gate.state, gate.phase_kind = True, 10, "running", "reflect"
    room.on_message(event(12, "note.created", note={"id": "n2"}))
    assert room.waiting() and gate.seq == 10 and gate.loaded
    room.on_message(event(11, "note.created", note={"id": "n1"}))
    assert not room.waiting()
    assert gate.loaded and gate.seq == 12
    assert gate.admits("p1", "n1") and gate.admits("p1", "n2")
    room.close()


async def test_an_ephemeral_event_naming_a_seq_not_heard_waits_for_it() -> None:
    watcher = conn("facilitator")
    room = room_with(watcher)
    room.on_message(dragging(11, "n1", 0.4))  # checked after 11 was stored elsewhere
    await asyncio.sleep(0.02)
    assert frames(watcher) == []
    room.on_message(event(11, "note.moved", note_id="n2", x=0.2, y=0.2, area="now"))
    [frame] = await next_frames(watcher)
    assert [(e["type"], e["seq"]) for e in json.loads(frame.text)["events"]] == [
        ("note.moved", 11),
        ("note.dragging", 11),
    ]
    room.close()


async def test_what_never_arrives_is_waited_for_only_so_long() -> None:
    """A publish that was lost: after HOLE_WAIT_S the room sends what it has (the
    writers then fetch the missing event from the log) and waits no more for it."""
    watcher = conn("facilitator")
    watcher.last_seq = 10
    room = room_with(watcher)
    started = asyncio.get_running_loop().time()
    room.on_message(event(12, "input.locked"))
    [frame] = await next_frames(watcher)
    assert asyncio.get_running_loop().time() - started >= HOLE_WAIT_S
    assert (frame.first, frame.last) == (12, 12)
    assert not _whole(watcher, frame)
    room.on_message(event(13, "input.unlocked"))
    assert [f.last for f in frames(watcher)] == [13]  # at once: nothing missing now
    room.on_message(event(11, "input.unlocked"))  # the lost one after all: old now
    await asyncio.sleep(0.01)
    room.close()
