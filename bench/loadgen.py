"""The load generator: one asyncio process (uvloop when installed), many JSON clients.

`python -m bench.loadgen PLAN.json` runs a plan (bench.plan) against the app or the
floor and writes its raw measurements to `plan.out`. It is started by bench.run,
pinned to its own core.

* The schedule is open loop and seeded: within a phase, every participant's actions
  are Poisson arrivals at `flow.rate` per second, drawn before the phase starts and
  sent at their time whatever the server is doing (a late send is measured as slip).
  Phases are separated by the facilitator's commands, which wait for the previous
  phase's replies (a facilitator moves on when the room is done), so a slow server
  gets no command in the wrong phase.
* No client sends more than 10 messages per second (the server allows 20, burst 40):
  refusals (`rate_limited`) are counted, and should stay at zero.
* Every command carries `ts` (this process's perf_counter at send) and a `cid`; the
  server echoes both in the live event, so each delivery's latency is measured at
  the recipient, and the ack's arrival gives the confirmation latency (after commit).
* Every stored event's `seq` is kept per client, to compare with the database's
  event log at the end (lost, duplicated, reordered); acks list what was confirmed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import random
import sys
import time
from array import array
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidStatus

from bench.plan import EVENT_OF, REFLECT_PHASE, Plan
from bench.proc import cpu_seconds, rss_bytes

EPHEMERAL = frozenset({"note.dragging", "participant.presence", "note.drag"})
CONTROL = frozenset({"hello", "ack", "error", "pong", "snapshot"})
clock = time.perf_counter
REPLY_TIMEOUT = 60.0
RAMP_LIMIT = 0.25  # p99 delivery (s) that ends the ramp
MIN_GAP = 0.1  # seconds between two messages of one client: 10/s, half the server's limit
# The server allows 300 sockets per client address; on loopback every 127.x.y.z is this
# machine, so clients are spread over source addresses, 200 to each.
PER_SOURCE = 200
# Sockets `Generator.warm_workers` opens to reach every worker before RSS is read.
WARM_SOCKETS = 8
_clients = itertools.count()


class Recorder:
    """Everything measured, for the whole run (only while `on`)."""

    def __init__(self) -> None:
        self.on = False
        self.lat: dict[str, array[float]] = {}  # command kind -> delivery latencies (s)
        self.lat_ephemeral: array[float] = array("d")
        self.confirm: dict[str, array[float]] = {}
        self.fanout: dict[str, list[float]] = {}  # cid -> [sent, last, recipients, room size]
        self.slip: array[float] = array("d")
        # Events delivered while on (one per event and recipient, as the floor sends
        # them; an event superseded within a batch counts), and WebSocket frames.
        self.frames = 0
        self.wire_frames = 0
        self.bytes = 0
        self.untimed = 0  # stored events without ts (replayed by a catch-up)
        self.errors: Counter[str] = Counter()
        self.closes: Counter[str] = Counter()
        self.sent: Counter[str] = Counter()
        self.reconnects = 0
        self.first_send = 0.0
        self.last_arrival = 0.0

    def latency(self, kind: str, value: float) -> None:
        self.lat.setdefault(kind, array("d")).append(value)


REC = Recorder()


@dataclass(eq=False)
class Room:
    id: str
    join_code: str
    index: int
    clients: list[Client] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # note ids, as the facilitator saw them
    confirmed: list[tuple[int, str]] = field(default_factory=list)  # (seq, command type)
    final_seq: int = 0
    fac: Client | None = None

    @property
    def participants(self) -> list[Client]:
        return [c for c in self.clients if c is not self.fac]


class Client:
    def __init__(self, gen: Generator, room: Room, name: str, token: str, *, fac: bool) -> None:
        self.gen, self.room, self.name, self.token, self.fac = gen, room, name, token, fac
        self.conn: ClientConnection | None = None
        self.reader: asyncio.Task[None] | None = None
        self.last_seq = -1
        self.first_start: int | None = None  # the stream must be complete after this
        self.snapshots: list[int] = []
        self.seqs: array[int] = array("q")
        self.pending: dict[str, tuple[float, str]] = {}  # cid -> (sent, command type)
        self.replies: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.ready = asyncio.Event()
        self.auto_reconnect = True
        self.target: int | None = None
        self.caught_up = asyncio.Event()
        self.caught_up_at = 0.0
        self.counter = 0
        self.source = f"127.0.0.{2 + next(_clients) // PER_SOURCE}"

    # --- connection ---------------------------------------------------------------------

    def url(self) -> str:
        query = f"token={quote(self.token, safe='')}"
        if self.last_seq >= 0:
            query += f"&last_seq={self.last_seq}"
        return f"{self.gen.ws_base}/ws/workshops/{self.room.id}?{query}"

    async def connect(self) -> None:
        for attempt in range(20):
            try:
                self.conn = await websockets.connect(
                    self.url(),
                    compression="deflate" if self.gen.plan.compression else None,
                    max_size=None,
                    open_timeout=120,
                    ping_interval=None,
                    close_timeout=2,
                    **self.gen.socket_options(self.source),
                )
                break
            except (OSError, InvalidStatus, TimeoutError) as exc:
                REC.errors[f"connect:{type(exc).__name__}"] += 1
                await asyncio.sleep(0.2 * (attempt + 1))
        else:
            raise RuntimeError(f"{self.name} could not connect")
        self.reader = asyncio.create_task(self._read(self.conn))

    async def _read(self, conn: ClientConnection) -> None:
        try:
            async for raw in conn:
                self.on_message(raw)
        except ConnectionClosed:
            pass
        code = conn.close_code
        REC.closes[str(code)] += 1
        if self.auto_reconnect and not self.gen.stopping and code != 4003:
            REC.reconnects += 1
            await asyncio.sleep(0.2 + random.random() * 0.3)  # noqa: S311 - jitter
            await self.connect()

    def drop(self) -> None:
        """Lose the connection as a network failure would (no close handshake)."""
        self.auto_reconnect = False
        if self.conn is not None and self.conn.transport is not None:
            self.conn.transport.abort()

    # --- receiving ---------------------------------------------------------------------

    def on_message(self, raw: str | bytes) -> None:
        now = clock()
        msg = json.loads(raw)
        type_ = msg.get("type")
        if type_ in CONTROL:
            self._control(type_, msg, now)
            return
        if REC.on:
            REC.wire_frames += 1
            REC.bytes += len(raw)
            REC.last_arrival = now
        if type_ != "batch":
            self.on_event(msg, now)
            return
        # A batch covers every stored seq from `from` to its last stored event; events
        # superseded within it (vote totals) are left out but count as received.
        covered = msg.get("from")
        for event in msg["events"]:
            if covered is not None and event.get("type") not in EPHEMERAL:
                seq = int(event["seq"])
                while covered < seq:
                    self.seqs.append(covered)
                    covered += 1
                    if REC.on:
                        REC.frames += 1
                covered = max(covered, seq + 1)
            self.on_event(event, now)

    def on_event(self, msg: dict[str, Any], now: float) -> None:
        type_ = msg.get("type")
        seq = int(msg["seq"])
        if REC.on:
            REC.frames += 1
        ts = msg.get("ts")
        ephemeral = type_ in EPHEMERAL
        if ts is not None:
            if REC.on:
                cid = msg.get("cid") or "?:"
                delay = now - float(ts)
                if ephemeral:
                    REC.lat_ephemeral.append(delay)
                else:
                    REC.latency(cid.partition(":")[0], delay)
                fan = REC.fanout.get(cid)
                if fan is not None:
                    fan[1] = max(fan[1], now)
                    fan[2] += 1
        elif not ephemeral and REC.on:
            REC.untimed += 1
        if ephemeral:
            return
        self.seqs.append(seq)
        self.last_seq = max(self.last_seq, seq)
        if self.first_start is None:
            self.first_start = seq - 1
        if self.fac and type_ in ("note.created", "note.create"):
            note = msg.get("note")
            self.room.notes.append(note["id"] if isinstance(note, dict) else f"n{seq}")
        if self.target is not None and self.last_seq >= self.target and not self.caught_up.is_set():
            self.caught_up_at = now
            self.caught_up.set()

    def _control(self, type_: str, msg: dict[str, Any], now: float) -> None:
        if type_ == "snapshot":
            seq = int(msg["seq"])
            self.snapshots.append(seq)
            if self.first_start is None:
                self.first_start = seq
            self.last_seq = seq
            self.ready.set()
            return
        if type_ == "hello":
            if self.last_seq >= 0:
                self.ready.set()  # a resume: the catch-up follows
            return
        if type_ not in ("ack", "error"):
            return
        cid = msg.get("cid")
        sent = self.pending.pop(cid, None) if isinstance(cid, str) else None
        if type_ == "error":
            REC.errors[str(msg.get("code"))] += 1
        elif sent is not None:
            kind = cid.partition(":")[0] if isinstance(cid, str) else "?"
            if REC.on:
                REC.confirm.setdefault(kind, array("d")).append(now - sent[0])
            acked = msg.get("seq")
            if acked is not None and EVENT_OF.get(sent[1]) is not None:
                self.room.confirmed.append((int(acked), sent[1]))
                self.room.final_seq = max(self.room.final_seq, int(acked))
        future = self.replies.pop(cid, None) if isinstance(cid, str) else None
        if future is not None and not future.done():
            future.set_result(msg)

    # --- sending -----------------------------------------------------------------------

    async def send(
        self,
        kind: str,
        command: dict[str, Any],
        reply: asyncio.Future[dict[str, Any]] | None = None,
    ) -> str:
        self.counter += 1
        cid = f"{kind}:{self.name}:{self.counter}"
        if reply is not None:
            self.replies[cid] = reply
        now = clock()
        message = {**command, "cid": cid, "ts": now}
        self.pending[cid] = (now, command["type"])
        if REC.on:
            REC.sent[command["type"]] += 1
            REC.fanout[cid] = [now, 0.0, 0.0, float(len(self.room.clients))]
            if not REC.first_send:
                REC.first_send = now
        if self.conn is None:
            raise RuntimeError("not connected")
        with contextlib.suppress(ConnectionClosed):
            await self.conn.send(json.dumps(message, separators=(",", ":")))
        return cid

    async def do(self, kind: str, command: dict[str, Any]) -> dict[str, Any]:
        """Send a command and wait (at most a minute) for its reply (ack or error)."""
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        await self.send(kind, command, future)
        return await asyncio.wait_for(future, REPLY_TIMEOUT)


class Generator:
    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.ws_base = plan.base.replace("http://", "ws://", 1)
        self.loopback = httpx.URL(plan.base).host == "127.0.0.1"
        self.rooms: list[Room] = []
        self.stopping = False
        self.result: dict[str, Any] = {"scenario": plan.scenario, "target": plan.target}

    def socket_options(self, source: str) -> dict[str, Any]:
        """Connection options for a client (its source address on loopback)."""
        return {"local_addr": (source, 0)} if self.loopback else {}

    # --- setup -------------------------------------------------------------------------

    async def setup(self) -> None:
        plan = self.plan
        if plan.target == "floor":
            for w in range(plan.workshops):
                room = Room(f"w{plan.seed}x{w}", "", w)
                room.fac = Client(self, room, f"f{w}", "fac", fac=True)
                room.clients = [room.fac] + [
                    Client(self, room, f"p{w}-{i}", f"t{i}", fac=False)
                    for i in range(plan.participants)
                ]
                self.rooms.append(room)
            return
        headers = {"Authorization": f"Bearer {plan.fac_token}"}
        limits = httpx.Limits(max_connections=16)
        async with httpx.AsyncClient(base_url=plan.base, timeout=120, limits=limits) as http:
            for w in range(plan.workshops):
                r = await http.post(
                    "/api/workshops",
                    json={"definition": "dhs-cx-maturity", "title": f"Bench {w}"},
                    headers=headers,
                )
                r.raise_for_status()
                body = r.json()
                room = Room(body["id"], body["join_code"], w)
                room.fac = Client(self, room, f"f{w}", plan.fac_token, fac=True)
                room.clients = [room.fac]
                self.rooms.append(room)
            gate = asyncio.Semaphore(16)

            async def join(room: Room, i: int) -> Client:
                async with gate:
                    r = await http.post(
                        f"/api/workshops/{room.id}/participants",
                        json={"join_code": room.join_code, "display_name": f"P{i}"},
                    )
                    r.raise_for_status()
                    return Client(self, room, f"p{room.index}-{i}", r.json()["token"], fac=False)

            for room in self.rooms:
                room.clients += await asyncio.gather(
                    *(join(room, i) for i in range(plan.participants))
                )

    async def warm_workers(self) -> None:
        """Serve a socket on every worker before RSS is read, not only on the one each
        facilitator reached: a worker's first socket costs it about 1 MB, once (lazy
        imports, compiled statements, each route's first call), which is not memory
        per participant. The kernel picks a worker for each socket, so open several
        of the first facilitator's (all of them on one of two workers: 1 in 2^7),
        wait for their snapshots, and close them."""
        room = self.rooms[0]
        assert room.fac is not None
        warm = [
            Client(self, room, f"warm{i}", room.fac.token, fac=True) for i in range(WARM_SOCKETS)
        ]
        await asyncio.gather(*(c.connect() for c in warm))
        await asyncio.gather(*(asyncio.wait_for(c.ready.wait(), 60) for c in warm))
        for client in warm:
            client.auto_reconnect = False
            if client.conn is not None:
                await client.conn.close()
        await asyncio.gather(*(c.reader for c in warm if c.reader is not None))

    async def connect_all(self) -> dict[str, Any]:
        """The facilitators first (and a warm-up), then every participant; RSS around it."""
        for room in self.rooms:
            assert room.fac is not None
            await room.fac.connect()
            await asyncio.wait_for(room.fac.ready.wait(), 60)
        await self.warm_workers()
        await asyncio.sleep(1.0)
        rss_before = rss_bytes(self.plan.server_pid)
        gate = asyncio.Semaphore(self.plan.connect_concurrency)
        started = clock()

        async def one(client: Client) -> None:
            async with gate:
                await client.connect()
                await asyncio.wait_for(client.ready.wait(), 120)

        await asyncio.gather(*(one(c) for room in self.rooms for c in room.participants))
        connected = clock() - started
        await asyncio.sleep(3.0)  # presence and catch-ups settle; then everyone is idle
        rss_after = rss_bytes(self.plan.server_pid)
        n = sum(len(room.participants) for room in self.rooms)
        return {
            "clients": n,
            "connect_all_s": connected,
            "rss_before": rss_before,
            "rss_after": rss_after,
            "rss_per_idle_conn": (rss_after - rss_before) / max(1, n),
        }

    # --- the flow ----------------------------------------------------------------------

    async def facilitate(self, room: Room, command: dict[str, Any]) -> None:
        assert room.fac is not None
        reply = await room.fac.do(f"fac.{command['type']}", command)
        if reply["type"] != "ack":
            REC.errors[f"fac:{command['type']}:{reply.get('code')}"] += 1

    async def quiet(self, room: Room) -> None:
        """Wait (at most drain_timeout) until every command of the room has its reply."""
        deadline = clock() + self.plan.drain_timeout
        while any(c.pending for c in room.clients) and clock() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)

    async def phase(
        self,
        room: Room,
        rng: random.Random,
        per_client: int,
        make: Any,
        *,
        burst: int = 1,
        rate: float = 0.0,
        share: float = 1.0,
    ) -> None:
        """Each participant (of the first `share`) does `per_client` actions (each `burst`
        messages 0.1 s apart) at Poisson times over per_client / rate seconds."""
        flow = self.plan.flow
        window = per_client / (rate or flow.rate)
        plans: list[tuple[Client, list[float]]] = []
        actors = room.participants
        for client in actors[: max(1, round(len(actors) * share))]:
            times = sorted(rng.uniform(0, window) for _ in range(per_client))
            spaced: list[float] = []
            for t in times:
                if spaced and t < spaced[-1] + MIN_GAP * burst:
                    t = spaced[-1] + MIN_GAP * burst
                spaced.append(t)
            plans.append((client, spaced))
        start = clock()

        async def run(client: Client, times: list[float], crng: random.Random) -> None:
            for k, t in enumerate(times):
                for b in range(burst):
                    due = start + t + b * MIN_GAP
                    delay = due - clock()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    REC.slip.append(max(0.0, clock() - due))
                    kind, command = make(client, k, b, crng)
                    await client.send(kind, command)

        busy = [self.busy_facilitator(room, start, window)] if flow.fac_busy > 0 else []
        await asyncio.gather(
            *(run(c, times, random.Random(rng.random())) for c, times in plans),  # noqa: S311
            *busy,
        )
        await self.quiet(room)
        await asyncio.sleep(flow.gap)

    async def busy_facilitator(self, room: Room, start: float, window: float) -> None:
        """`Flow.fac_busy` timer commands per second, evenly spaced over the phase's
        window while its participants act: a timer started, then extended. Each waits
        for the previous one's reply, as a facilitator's clicks do."""
        count = max(1, round(window * self.plan.flow.fac_busy))
        for i in range(count):
            delay = start + (i + 0.5) * window / count - clock()
            if delay > 0:
                await asyncio.sleep(delay)
            if i == 0:
                await self.facilitate(room, {"type": "timer.start", "seconds": 600})
            else:
                await self.facilitate(room, {"type": "timer.extend", "seconds": 60})

    async def flow(self, room: Room) -> None:
        plan, flow = self.plan, self.plan.flow
        rng = random.Random(plan.seed * 1_000_003 + room.index)  # noqa: S311 - a schedule
        await asyncio.sleep(rng.uniform(0, plan.stagger) if plan.workshops > 1 else 0)
        await self.facilitate(room, {"type": "workshop.start"})  # -> measurement.sort
        cards = plan.cards
        if flow.card_votes:

            def vote(c: Client, k: int, _b: int, r: random.Random) -> tuple[str, dict[str, Any]]:
                card = cards[(int(c.name.rsplit("-", 1)[1]) + k) % len(cards)]
                choice = r.choice(("do", "do", "dont", "unsure"))
                return "vote", {"type": "card.vote", "card_id": card, "choice": choice}

            await self.phase(room, rng, flow.card_votes, vote)
            await self.facilitate(room, {"type": "votes.reveal"})
        await self.facilitate(room, {"type": "phase.goto", "index": REFLECT_PHASE})
        if flow.notes:

            def note(c: Client, k: int, _b: int, r: random.Random) -> tuple[str, dict[str, Any]]:
                words = " ".join(r.choice(WORDS) for _ in range(r.randint(3, 9)))
                return "note", {
                    "type": "note.create",
                    "area": "how",
                    "text": words.capitalize(),
                    "x": round(r.random(), 3),
                    "y": round(r.random(), 3),
                }

            await self.phase(room, rng, flow.notes, note)
        if flow.drag_sessions and room.notes:
            picks: dict[tuple[str, int], tuple[str, float, float]] = {}
            previews = flow.drag_previews

            def drag(c: Client, k: int, b: int, r: random.Random) -> tuple[str, dict[str, Any]]:
                key = (c.name, k)
                if key not in picks:
                    picks[key] = (r.choice(room.notes), r.random(), r.random())
                note_id, x, y = picks[key]
                x = min(1.0, max(0.0, x + r.uniform(-0.03, 0.03)))
                y = min(1.0, max(0.0, y + r.uniform(-0.03, 0.03)))
                picks[key] = (note_id, x, y)
                pos = {"note_id": note_id, "x": round(x, 4), "y": round(y, 4)}
                if b < previews:
                    return "drag", {"type": "note.drag", **pos}
                return "move", {"type": "note.move", **pos}

            await self.phase(
                room,
                rng,
                flow.drag_sessions,
                drag,
                burst=previews + 1,
                rate=flow.drag_rate,
                share=flow.drag_share,
            )
        await self.facilitate(room, {"type": "phase.next"})  # -> prioritise
        if flow.dots and room.notes:

            def dot(_c: Client, _k: int, _b: int, r: random.Random) -> tuple[str, dict[str, Any]]:
                return "dot", {"type": "dot.add", "note_id": r.choice(room.notes)}

            await self.phase(room, rng, flow.dots, dot)

    async def seed_events(self, room: Room) -> None:
        """S4: fill the workshop's log (notes written, then moved over and over)."""
        target = self.plan.flow.seed_events
        await self.facilitate(room, {"type": "workshop.start"})
        await self.facilitate(room, {"type": "phase.goto", "index": REFLECT_PHASE})
        parts = room.participants
        rng = random.Random(self.plan.seed)  # noqa: S311
        per = max(1, (target - room.final_seq) // max(1, len(parts)))

        async def one(client: Client) -> None:
            mine: list[str] = []
            for k in range(per):
                if k < 5 or not mine:
                    reply = await client.do(
                        "note",
                        {
                            "type": "note.create",
                            "area": rng.choice(("now", "hope", "how")),
                            "text": " ".join(rng.choice(WORDS) for _ in range(6)),
                        },
                    )
                    if reply["type"] == "ack":
                        mine.append(reply["result"]["note_id"])
                else:
                    await client.do(
                        "move",
                        {
                            "type": "note.move",
                            "note_id": rng.choice(mine),
                            "x": round(rng.random(), 3),
                            "y": round(rng.random(), 3),
                        },
                    )
                await asyncio.sleep(MIN_GAP)

        await asyncio.gather(*(one(c) for c in parts))

    async def ramp(self, room: Room) -> None:
        """Sustainable rate: note.move at rising aggregate rates, one step after another."""
        flow = self.plan.flow
        await self.facilitate(room, {"type": "workshop.start"})
        await self.facilitate(room, {"type": "phase.goto", "index": REFLECT_PHASE})
        rng = random.Random(self.plan.seed)  # noqa: S311
        parts = room.participants
        await asyncio.gather(
            *(
                c.do("setup", {"type": "note.create", "area": "how", "text": f"Note {c.name}"})
                for c in parts
            )
        )
        await self.quiet(room)
        for step, rate in enumerate(flow.ramp):
            n = int(rate * flow.ramp_seconds)
            times = sorted(rng.uniform(0, flow.ramp_seconds) for _ in range(n))
            # Round-robin over participants keeps each one far below its rate limit.
            start = clock()

            async def one(k: int, t: float, step: int = step, start: float = start) -> None:
                client = parts[k % len(parts)]
                delay = start + t - clock()
                if delay > 0:
                    await asyncio.sleep(delay)
                REC.slip.append(max(0.0, clock() - start - t))
                command = {
                    "type": "note.move",
                    "note_id": rng.choice(room.notes),
                    "x": round(rng.random(), 3),
                    "y": round(rng.random(), 3),
                }
                await client.send(f"r{step}", command)

            await asyncio.gather(*(one(k, t) for k, t in enumerate(times)))
            await self.quiet(room)
            await asyncio.sleep(1.0)
            done = sorted(REC.lat.get(f"r{step}", ()))
            if not done or done[min(len(done) - 1, int(len(done) * 0.99))] > RAMP_LIMIT:
                break  # past the limit: higher steps would only queue up

    async def storm(self) -> dict[str, Any]:
        """S3: everyone drops at once, the room moves on, everyone resumes from last seq."""
        parts = [c for room in self.rooms for c in room.participants]
        for c in parts:
            c.drop()
        await asyncio.sleep(1.5)  # the server notices (presence offline)
        for k in range(self.plan.flow.storm_events):
            command: dict[str, Any] = (
                {"type": "timer.start", "seconds": 600} if k % 2 == 0 else {"type": "timer.pause"}
            )
            await asyncio.gather(*(self.facilitate(room, command) for room in self.rooms))
        for room in self.rooms:
            for c in room.participants:
                c.target = room.final_seq
                c.caught_up.clear()
        cpu0 = cpu_seconds(self.plan.server_pid)
        started = clock()
        for c in parts:
            c.auto_reconnect = True
        await asyncio.gather(*(c.connect() for c in parts), return_exceptions=True)
        connected = clock() - started
        waits = [asyncio.wait_for(c.caught_up.wait(), self.plan.drain_timeout) for c in parts]
        outcome = await asyncio.gather(*waits, return_exceptions=True)
        done = clock() - started
        times = sorted(c.caught_up_at - started for c in parts if c.caught_up.is_set())
        return {
            "clients": len(parts),
            "connected_s": connected,
            "resynced_all_s": done if all(o is True for o in outcome) else None,
            "not_resynced": sum(1 for o in outcome if o is not True),
            "resync_p50_s": times[len(times) // 2] if times else None,
            "resync_p99_s": times[min(len(times) - 1, int(len(times) * 0.99))] if times else None,
            "server_cpu_s": cpu_seconds(self.plan.server_pid) - cpu0,
        }

    async def drain(self) -> None:
        """Wait until every client has every stored event its room confirmed."""
        for room in self.rooms:
            await self.quiet(room)
        deadline = clock() + self.plan.drain_timeout
        while clock() < deadline:
            if all(c.last_seq >= room.final_seq for room in self.rooms for c in room.clients):
                return
            await asyncio.sleep(0.05)
        REC.errors["drain_timeout"] += 1

    # --- the run -----------------------------------------------------------------------

    async def run(self) -> dict[str, Any]:
        plan = self.plan
        t = clock()
        await self.setup()
        self.result["setup_s"] = clock() - t
        self.result["connect"] = await self.connect_all()
        extra = plan.extra_cpu_names
        cpu0, extra0, own0 = cpu_seconds(plan.server_pid), cpu_by_name(extra), own_cpu()
        REC.on = True
        started = clock()
        if plan.flow.seed_events:
            await asyncio.gather(*(self.seed_events(room) for room in self.rooms))
        elif plan.flow.ramp:
            await asyncio.gather(*(self.ramp(room) for room in self.rooms))
        else:
            await asyncio.gather(*(self.flow(room) for room in self.rooms))
        await self.drain()
        ended = clock()
        REC.on = False
        self.result["window_s"] = ended - started
        self.result["server_cpu_s"] = cpu_seconds(plan.server_pid) - cpu0
        self.result["extra_cpu_s"] = cpu_by_name(extra) - extra0
        self.result["loadgen_cpu_s"] = own_cpu() - own0
        self.result["rss_end"] = rss_bytes(plan.server_pid)
        if plan.flow.storm_events:
            self.result["storm"] = await self.storm()
            await self.drain()
        self.stopping = True
        await self.collect()
        for room in self.rooms:
            for c in room.clients:
                if c.conn is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(c.conn.close(), 2)
        return self.result

    async def collect(self) -> None:
        def summary(values: Any) -> dict[str, Any]:
            data = sorted(values)
            if not data:
                return {"n": 0}
            n = len(data)
            return {
                "n": n,
                "p50_ms": data[n // 2] * 1000,
                "p99_ms": data[min(n - 1, int(n * 0.99))] * 1000,
                "max_ms": data[-1] * 1000,
            }

        everything = array("d")
        for values in REC.lat.values():
            everything.extend(values)
        confirm_all = array("d")
        for values in REC.confirm.values():
            confirm_all.extend(values)
        fan = [f[1] - f[0] for f in REC.fanout.values() if f[2] > 0]
        incomplete = sum(1 for f in REC.fanout.values() if 0 < f[2] < f[3])
        span = max(1e-9, REC.last_arrival - REC.first_send)
        flow = self.plan.flow
        parts = sum(len(r.participants) for r in self.rooms)
        drag_rate = flow.drag_rate or flow.rate
        commands = parts * (flow.card_votes + flow.notes + flow.dots)
        commands += round(parts * flow.drag_share) * flow.drag_sessions * (flow.drag_previews + 1)
        nominal_window = (flow.card_votes + flow.notes + flow.dots) / flow.rate
        nominal_window += flow.drag_sessions / drag_rate if flow.drag_sessions else 0.0
        recipients = len(self.rooms[0].clients) if self.rooms else 0
        offered_events = commands / nominal_window if nominal_window else 0.0
        self.result.update(
            {
                "delivery": summary(everything),
                "delivery_by_kind": {k: summary(v) for k, v in REC.lat.items()},
                "delivery_ephemeral": summary(REC.lat_ephemeral),
                "last_recipient": summary(fan),
                "confirm": summary(confirm_all),
                "confirm_by_kind": {k: summary(v) for k, v in REC.confirm.items()},
                "slip": summary(REC.slip),
                "frames": REC.frames,
                "wire_frames": REC.wire_frames,
                "bytes": REC.bytes,
                "untimed_deliveries": REC.untimed,
                "incomplete_fanouts": incomplete,
                "events_sent": sum(REC.sent.values()),
                "sent_by_type": dict(REC.sent),
                "offered_events_per_s": offered_events,
                "offered_frames_per_s": offered_events * recipients,
                "achieved_events_per_s": sum(REC.sent.values()) / span,
                "achieved_frames_per_s": REC.frames / span,
                "errors": dict(REC.errors),
                "closes": dict(REC.closes),
                "reconnects": REC.reconnects,
            }
        )
        streams = []
        for room in self.rooms:
            for c in room.clients:
                seqs = list(c.seqs)
                reorders = sum(1 for a, b in itertools.pairwise(seqs) if b < a)
                unique = sorted(set(seqs))
                ranges: list[list[int]] = []
                for s in unique:
                    if ranges and s == ranges[-1][1] + 1:
                        ranges[-1][1] = s
                    else:
                        ranges.append([s, s])
                streams.append(
                    {
                        "room": room.id,
                        "client": c.name,
                        "start": c.first_start,
                        "snapshots": c.snapshots,
                        "ranges": ranges,
                        "duplicates": len(seqs) - len(unique),
                        "reorders": reorders,
                    }
                )
        self.result["streams"] = streams
        self.result["rooms"] = [
            {
                "id": r.id,
                "join_code": r.join_code,
                "confirmed": r.confirmed,
                "final_seq": r.final_seq,
            }
            for r in self.rooms
        ]


def own_cpu() -> float:
    t = os.times()
    return t.user + t.system


def cpu_by_name(names: list[str]) -> float:
    """CPU seconds of every process whose name is in `names` (PostgreSQL, Redis)."""
    if not names:
        return 0.0
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        if name in names or any(name.startswith(n) for n in names):
            fields = stat[stat.rindex(")") + 2 :].split()
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


WORDS = [
    *("survey", "feedback", "journey", "customer", "service", "trust", "data", "team"),
    *("leadership", "review", "quarterly", "channel", "portal", "call", "centre", "wait"),
    *("times", "plain", "language", "pilot", "research", "metrics", "dashboard"),
    *("training", "budget", "partner", "agency", "form", "digital", "access", "outcome"),
]


def main() -> None:
    plan = Plan.load(Path(sys.argv[1]))
    try:
        import uvloop

        factory: Any = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        result = runner.run(Generator(plan).run())
    Path(plan.out).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
