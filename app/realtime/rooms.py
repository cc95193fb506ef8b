"""This worker's live connections, grouped by workshop ("rooms").

A room subscribes to the hub while it has connections. The first hub message after
a quiet spell goes out at once; what follows is held until the next tick, then rendered
once per audience present as one frame (a `batch` when several events) and queued on
every connection. The next tick is the next turn of the event loop while the worker's
fan-out budget lasts (`Pacer`: frames per second, with a burst), so a room that is not
busy sends what it hears at once; a busy one waits for the budget, up to 50 ms, and
pays its fan-out once per tick whatever number of events it heard. When ticks run late
(the worker's core is busy elsewhere, or with more than the budget allows), rooms hold
what they hear for as long as that lateness, up to the same 50 ms.

Each connection's writer keeps its client's `seq` in order without holes or repeats:
a frame that does not follow on from what the client has is sent event by event, and
an event that jumps ahead makes it fetch the missing ones first (from the room's ring
of recent events, or the event log), while anything at or below what the client has
already seen is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from starlette.websockets import WebSocket, WebSocketState

from app.realtime.gate import DragGate
from app.realtime.html import render_control, render_html, render_seq
from app.realtime.hub import RESYNC, Hub
from app.realtime.messages import EPHEMERAL_EVENTS, Audience
from app.realtime.presence import Board, MemoryBoard, Presence
from app.realtime.views import dumps, render_text
from app.services.live.context import Actor

if TYPE_CHECKING:
    from app.services.live.snapshot import SharedSnapshot

log = logging.getLogger(__name__)

RING_SIZE = 1000  # stored events kept per room for resumes (the resume limit)
MAX_QUEUE = 2000  # a client this far behind is disconnected and resumes by seq
CLOSE_REMOVED = 4003  # application close code: removed from the workshop


@dataclass(eq=False, slots=True)
class Connection:
    ws: WebSocket
    actor: Actor
    audience: Audience
    fmt: Literal["json", "html"] = "json"
    address: str = "unknown"
    last_seq: int = 0
    queue: asyncio.Queue[tuple[str, Any]] = field(default_factory=asyncio.Queue)
    closed: bool = False
    room: Room | None = None

    def put(self, kind: str, item: Any) -> None:
        if self.closed:
            return
        if self.queue.qsize() >= MAX_QUEUE:
            self.closed = True
            self.queue.put_nowait(("close", (1013, "too far behind; reconnect to resume")))
            return
        self.queue.put_nowait((kind, item))

    def control(self, message: dict[str, Any]) -> None:
        """A message for this client only (ack, error, snapshot, pong). It goes after
        the events the room holds for its next tick: an ack after its own event, a pong
        after everything sent before the ping."""
        if self.fmt == "html":
            if message.get("type") not in ("error", "snapshot", "ack"):
                return
            text = render_control(message)
        else:
            text = dumps(message)
        self.after_events("text", text)

    def after_events(self, kind: str, item: Any) -> None:
        """Queue behind whatever the room holds for this client's next frame."""
        if self.room is not None and self.room.holding():
            self.room.defer(self, kind, item)
        else:
            self.put(kind, item)


# Sending one frame costs each connection about 15-25 us of the worker's core. The
# worker sends up to FANOUT_FRAMES_PER_S frames a second (a third to a half of its
# core) without holding anything back, BURST more at once; beyond that, rooms hold
# what they hear until the budget allows (at most MAX_HOLD_S), and a held tick sends
# all of it as one frame per connection. A room of 100 hearing 50 events a second
# (5,000 frames) never waits; a room of 500 hearing 75 (37,500) flushes every 25 ms.
FANOUT_FRAMES_PER_S = 20_000
FANOUT_BURST_FRAMES = 2_000
MAX_HOLD_S = 0.05
# The budget assumes the worker has its core. When it has not (several workers on one
# core, or a core busy elsewhere), the rooms' ticks run late: a tick this late means
# the loop is behind, and rooms hold what they hear for as long as the lateness (at
# most MAX_HOLD_S), so that each connection gets one frame per tick instead of one per
# event; a lateness older than LATE_FRESH_S no longer counts.
LATE_LIMIT_S = 0.015
LATE_FRESH_S = 0.1
# With several workers, a workshop's events reach a room in the order the workers
# published them, which is not always their seq order (each worker publishes once
# its command's commit is back). A room that hears an event ahead of one it has not
# heard yet (or an ephemeral event naming a seq it has not heard) holds what it heard
# for up to HOLE_WAIT_S, looking every HOLE_POLL_S, for the missing one to arrive;
# then it sends what it has, in seq order, and the writers fetch from the log only
# what never came (a publish that was lost).
HOLE_WAIT_S = 0.1
HOLE_POLL_S = 0.002


class Pacer:
    """The worker's fan-out budget, in frames: spent by every flush, refilled with time."""

    def __init__(
        self,
        rate: float = FANOUT_FRAMES_PER_S,
        burst: float = FANOUT_BURST_FRAMES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self._budget = burst
        self._stamp = clock()
        self._late = 0.0  # how late the latest tick ran
        self._late_at = -LATE_FRESH_S  # when (the clock's time)

    def _refill(self) -> None:
        now = self.clock()
        self._budget = min(self.burst, self._budget + (now - self._stamp) * self.rate)
        self._stamp = now

    def spend(self, frames: int) -> None:
        self._refill()
        self._budget -= frames

    def late(self, seconds: float) -> None:
        """A room's tick ran this many seconds after it was due."""
        self._late, self._late_at = seconds, self.clock()

    def wait(self) -> float:
        """Seconds until the budget is back above zero and the loop is not behind
        (0: send now), at most MAX_HOLD_S."""
        self._refill()
        wait = 0.0 if self._budget > 0 else -self._budget / self.rate
        if self._late > LATE_LIMIT_S and self._stamp - self._late_at < LATE_FRESH_S:
            wait = max(wait, self._late)
        return min(MAX_HOLD_S, wait)


# Vote progress carries absolute totals: within a batch, only the last per target
# matters to an audience that is not shown who voted.
_TOTALS = frozenset({"card.voted", "level.voted", "dot.added", "dot.removed"})


def _total_key(message: dict[str, Any]) -> tuple[Any, ...]:
    type_ = message["type"]
    if type_ == "card.voted":
        return ("card", message["function_id"], message["card_id"])
    if type_ == "level.voted":
        return ("level", message["function_id"], message["round"])
    return ("dot", message["note_id"])


def _in_seq_order(message: dict[str, Any]) -> tuple[int, bool]:
    return int(message["seq"]), message["type"] in EPHEMERAL_EVENTS


def _coalesce_key(message: dict[str, Any]) -> tuple[str, Any] | None:
    """Ephemeral events where only the latest per key matters (drag previews, presence)."""
    type_ = message["type"]
    if type_ == "note.dragging":
        return ("drag", message["note_id"])
    if type_ == "participant.presence":
        return ("presence", message["participant_id"])
    return None


@dataclass(slots=True)
class Frame:
    """What a tick sends one audience: `text` (one event, or a batch of them) and,
    for a writer that must not send it whole (a gap, an overlap, a removal), the
    events one by one as `parts` of (seq, ephemeral, text, message)."""

    text: str
    first: int | None  # the first stored seq covered (None: ephemeral events only)
    last: int  # the highest seq named (stored or ephemeral)
    need: int  # ephemeral seqs ahead of the stored ones before them must be had first
    clean: bool  # the stored seqs covered are consecutive, in order
    parts: list[tuple[int, bool, str, dict[str, Any]]]
    removed: frozenset[str]  # participants whose removal is in this frame


class Room:
    def __init__(
        self,
        workshop_id: str,
        anonymous: bool,
        seq: int,
        context: dict[str, Any],
        pacer: Pacer | None = None,
    ) -> None:
        self.workshop_id = workshop_id
        self.pacer = pacer or Pacer()
        self.context = context
        self.anonymous = anonymous
        self.last_seq = seq  # highest stored seq seen here (ephemeral events carry it)
        self.connections: set[Connection] = set()
        self.presence: dict[str, str] = {}
        # The version of each participant's latest presence applied (app.realtime.presence),
        # and the read of the board that a room new on this worker starts with.
        self.presence_versions: dict[str, int] = {}
        self.presence_filled: asyncio.Future[None] | None = None
        self.gate = DragGate()
        self._held: list[dict[str, Any]] = []  # heard since the last flush
        self._latest: dict[tuple[str, Any], dict[str, Any]] = {}
        self._held_anonymous = anonymous  # anonymity before the first held event
        self._tick: asyncio.TimerHandle | None = None
        self._due = 0.0  # when the armed tick should run (the loop's time)
        self._deferred: list[tuple[Connection, str, Any]] = []  # after the held events
        # Every stored seq up to `_heard` was heard (or given up on, `_give_up`);
        # `_early` holds those heard ahead of a hole, `_need` the highest seq an
        # ephemeral event named, `_hole_at` since when (the loop's time) one is open.
        self._heard = seq
        self._early: dict[int, dict[str, Any]] = {}
        self._need = seq
        self._hole_at: float | None = None
        self._unordered = False  # the held events may be out of seq order
        # The latest stored events heard, consecutive, as the log would replay them:
        # resumes and gap fills are served from here when it covers them.
        self.ring: deque[dict[str, Any]] = deque(maxlen=RING_SIZE)
        # A read of the log into the ring in flight (`seed`): others wait for it.
        self.filling: asyncio.Future[None] | None = None
        # The shared part of the latest snapshot built per audience: (seq, its build).
        # Everyone who joins at that seq gets it with their own `me` spliced in.
        self.snapshots: dict[Audience, tuple[int, asyncio.Future[SharedSnapshot]]] = {}

    def holding(self) -> bool:
        return bool(self._held)

    def waiting(self) -> bool:
        """Whether a stored event heard here is held until one before it arrives."""
        return self._hole_at is not None

    def defer(self, conn: Connection, kind: str, item: Any) -> None:
        self._deferred.append((conn, kind, item))

    def saw_presence(self, participant_id: str, status: str, version: int) -> bool:
        """Apply a participant's presence unless an older version than the one
        applied (version 0: the board was out of reach, applied always)."""
        if version and version < self.presence_versions.get(participant_id, 0):
            return False
        if version:
            self.presence_versions[participant_id] = version
        self.presence[participant_id] = status
        return True

    def on_message(self, message: dict[str, Any]) -> None:
        type_ = message.get("type")
        if type_ == "participant.presence" and not self.saw_presence(
            message["participant_id"], message["status"], int(message.get("version") or 0)
        ):
            return  # overtaken on its way by a newer word on that participant
        if message is RESYNC or type_ == RESYNC["type"]:
            self._give_up()
            self.flush()
            self.gate.forget()
            self.ring.clear()  # messages were lost: only the log knows them
            for conn in self.connections:
                conn.put("resync", None)
            return
        if not self._held:
            self._held_anonymous = self.anonymous
        if type_ == "anonymity.changed":
            self.anonymous = bool(message["anonymous"])
        seq = int(message["seq"])
        if type_ not in EPHEMERAL_EVENTS:
            self._hear(seq, message)
        elif seq > self._need:
            self._need = seq
        # An ephemeral event names a stored seq too (a join over HTTP is heard only so).
        self.last_seq = max(self.last_seq, seq)
        if self._hole_at is None and self._need > self._heard:
            self._hole_at = asyncio.get_running_loop().time()
            self._unordered = True
        key = _coalesce_key(message)
        if key is not None:
            self._latest[key] = message
        self._held.append(message)
        if self._tick is None:
            # Leading edge: after a quiet spell the first event goes at once (if the
            # worker's budget allows and nothing is missing); what follows waits for
            # the next tick.
            if self.pacer.wait() <= 0 and self._hole_at is None:
                self.flush()
            self._arm()

    def _hear(self, seq: int, message: dict[str, Any]) -> None:
        """A stored event: into the ring in seq order, or held aside until the ones
        before it are heard."""
        if seq <= self._heard:
            self._keep(message)  # an old one again (the ring keeps it only if new)
            return
        if seq > self._heard + 1:
            self._early[seq] = message
            self._need = max(self._need, seq)
            return
        self._keep(message)
        self._heard = seq
        early = self._early
        while early and (following := early.pop(self._heard + 1, None)) is not None:
            self._keep(following)
            self._heard += 1
        if not early and self._need <= self._heard:
            self._hole_at = None

    def _give_up(self) -> None:
        """Stop waiting for what is missing: the writers fetch it from the log."""
        for seq in sorted(self._early):
            self._keep(self._early[seq])
        self._heard = max(self._heard, self._need, *self._early)
        self._need = self._heard
        self._early.clear()
        self._hole_at = None

    def _arm(self) -> None:
        loop, wait = asyncio.get_running_loop(), self.pacer.wait()
        if self._hole_at is not None:
            wait = min(wait, HOLE_POLL_S)
        self._due = loop.time() + wait
        self._tick = loop.call_later(wait, self._on_tick)

    def _keep(self, message: dict[str, Any]) -> None:
        """A stored event, in seq order: to the drag gate, and into the ring."""
        self.gate.hear(message)
        seq = int(message["seq"])
        if self.ring:
            top = int(self.ring[-1]["seq"])
            if seq <= top:
                return
            if seq != top + 1:
                self.ring.clear()  # a hole: start again from here
        # As replayed from the log: no cid/ts (those belong to the live delivery).
        self.ring.append({**message, "cid": None, "ts": None})

    def seed(self, events: list[dict[str, Any]]) -> None:
        """Put stored events read from the log (consecutive, in order) into the ring,
        below what it holds: kept only if they reach up to its oldest event (or it is
        empty), so the ring stays consecutive."""
        if not events:
            return
        ring = self.ring
        if ring:
            bottom = int(ring[0]["seq"])
            if int(events[-1]["seq"]) < bottom - 1:
                return  # a hole between them: the ring keeps what it heard
            older = [e for e in events if int(e["seq"]) < bottom]
        else:
            older = events
        self.ring = deque([*older, *ring], maxlen=RING_SIZE)

    def replay(self, since: int, need: int, limit: int) -> list[dict[str, Any]] | None:
        """The stored events after `since` if this room has them all (no more than
        `limit`) and has heard up to at least `need`; None to ask the log."""
        ring = self.ring
        if not ring or since < 0:
            return None
        bottom, top = int(ring[0]["seq"]), int(ring[-1]["seq"])
        if since + 1 < bottom or since > top or top < need or top - since > limit:
            return None
        return list(itertools.islice(ring, since + 1 - bottom, None))

    def _on_tick(self) -> None:
        self._tick = None
        now = asyncio.get_running_loop().time()
        self.pacer.late(now - self._due)
        if self._hole_at is not None:
            if now - self._hole_at < HOLE_WAIT_S:
                self._arm()  # still waiting for what is missing
                return
            self._give_up()
        if self._held:
            self.flush()
            self._arm()

    def close(self) -> None:
        if self._tick is not None:
            self._tick.cancel()
            self._tick = None

    def flush(self) -> None:
        """Send what was heard since the last flush: one frame per audience present."""
        held, latest = self._held, self._latest
        if not held:
            return
        self._held, self._latest = [], {}
        self.pacer.spend(max(1, len(self.connections)))
        if self._unordered:
            # Heard out of order (a hole was waited for): in seq order, each
            # ephemeral event after the stored one it names.
            self._unordered = False
            held.sort(key=_in_seq_order)
        events = [
            msg for msg in held if (key := _coalesce_key(msg)) is None or latest.get(key) is msg
        ]
        frames: dict[tuple[Audience, str], Frame] = {}
        for conn in list(self.connections):
            key = (conn.audience, conn.fmt)
            frame = frames.get(key)
            if frame is None:
                frame = frames[key] = self._frame(events, conn)
            conn.put("event", frame)
        deferred, self._deferred = self._deferred, []
        for conn, kind, item in deferred:
            conn.put(kind, item)

    def _frame(self, events: list[dict[str, Any]], conn: Connection) -> Frame:
        # Browsers always; participants and the projector when it is anonymous.
        html = conn.fmt == "html"
        shown_totals_only = conn.audience != "facilitator"
        anonymous = self._held_anonymous
        shown: list[tuple[dict[str, Any], bool]] = []
        for msg in events:
            if msg["type"] == "anonymity.changed":
                anonymous = bool(msg["anonymous"])
            shown.append((msg, anonymous))
        # Collapse vote progress to the last event per target for audiences that see
        # totals only (browsers; participants and the projector when anonymous).
        keep = [True] * len(shown)
        seen: set[tuple[Any, ...]] = set()
        for i in range(len(shown) - 1, -1, -1):
            msg, anon = shown[i]
            if msg["type"] in _TOTALS and (html or (shown_totals_only and anon)):
                key = _total_key(msg)
                if key in seen:
                    keep[i] = False
                else:
                    seen.add(key)
        parts: list[tuple[int, bool, str, dict[str, Any]]] = []
        first: int | None = None
        top = 0  # highest stored seq so far
        last = need = 0
        clean = True
        removed: set[str] = set()
        dropped = 0  # stored events collapsed away
        for (msg, anon), kept in zip(shown, keep, strict=True):
            seq = int(msg["seq"])
            ephemeral = msg["type"] in EPHEMERAL_EVENTS
            last = max(last, seq)
            if ephemeral:
                if seq > top:
                    need = max(need, seq)
            else:
                if first is None:
                    first = seq
                elif seq != top + 1:
                    clean = False
                top = max(top, seq)
                if msg["type"] == "participant.removed":
                    removed.add(str(msg.get("participant_id")))
            if kept:
                parts.append((seq, ephemeral, self._render(msg, conn, anon), msg))
            elif not ephemeral:
                dropped += 1
        if len(parts) == 1 and not dropped:
            text = parts[0][2]
        elif conn.fmt == "html":
            text = "".join(p[2] for p in parts) + render_seq(last)
        else:
            head = f'{{"type":"batch","from":{"null" if first is None else first},"seq":{last},'
            text = head + '"events":[' + ",".join(p[2] for p in parts) + "]}"
        return Frame(text, first, last, need, clean, parts, frozenset(removed))

    def _render(self, message: dict[str, Any], conn: Connection, anonymous: bool) -> str:
        if conn.fmt == "html":
            return render_html(message, conn.audience, anonymous, self.context)
        return render_text(message, conn.audience, anonymous)

    def render(self, message: dict[str, Any], conn: Connection) -> str:
        return self._render(message, conn, self.anonymous)


class Rooms:
    def __init__(self, hub: Hub, board: Board | None = None) -> None:
        self.hub = hub
        self.presence = Presence(board if board is not None else MemoryBoard(), hub, self)
        self.rooms: dict[str, Room] = {}
        self.per_address: dict[str, int] = {}
        self.pacer = Pacer()  # one fan-out budget for all of this worker's rooms

    def join(self, conn: Connection, anonymous: bool, seq: int, context: dict[str, Any]) -> Room:
        wid = conn.actor.workshop_id
        room = self.rooms.get(wid)
        if room is None:
            room = self.rooms[wid] = Room(wid, anonymous, seq, context, self.pacer)
            self.hub.subscribe(wid, room.on_message)
        room.connections.add(conn)
        conn.room = room
        self.per_address[conn.address] = self.per_address.get(conn.address, 0) + 1
        return room

    def leave(self, conn: Connection) -> Room | None:
        wid = conn.actor.workshop_id
        room = self.rooms.get(wid)
        if room is None:
            return None
        if conn in room.connections:
            left = self.per_address.get(conn.address, 1) - 1
            if left > 0:
                self.per_address[conn.address] = left
            else:
                self.per_address.pop(conn.address, None)
        room.connections.discard(conn)
        if not room.connections:
            self.hub.unsubscribe(wid, room.on_message)
            room.close()
            del self.rooms[wid]
        return room

    def render_for(self, conn: Connection, message: dict[str, Any]) -> str:
        room = self.rooms.get(conn.actor.workshop_id)
        if room is None:
            room = Room(conn.actor.workshop_id, True, 0, {})  # safest: anonymous
        return room.render(message, conn)

    def count(self) -> int:
        return sum(len(r.connections) for r in self.rooms.values())


async def close_quietly(ws: WebSocket, code: int, reason: str) -> None:
    if ws.application_state == WebSocketState.CONNECTED:
        with contextlib.suppress(Exception):
            await ws.close(code, reason)
