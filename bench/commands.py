"""Server CPU and wall time per live command, without sockets.

Runs `LiveService.handle` in a loop, in this process, against a fresh workshop of
20 participants: what one command costs the server between its parse and its
publish (the hub is in memory). SQLite in a temporary directory by default;
`--database-url` for another database, which must be empty or migrated (it is
migrated here). Times are per command: CPU of this whole process (the database
threads too) and wall clock.

    python -m bench.commands                         # every kind, 2000 each
    python -m bench.commands --kind note.move --n 5000
    python -m bench.commands --database-url postgresql+asyncpg://u:p@127.0.0.1/bench
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI

from app.config import Settings
from app.db.engine import make_engine
from app.db.migrate import upgrade
from app.db.models import Workshop
from app.domain.phases import Phase, PhaseKind
from app.main import create_app
from app.realtime.messages import parse_command
from app.services.facilitators import create_facilitator
from app.services.live.context import Actor
from app.services.live.engine import LiveService

KINDS = (
    "card.vote",
    "level.vote",
    "note.create",
    "note.move",
    "note.drag",
    "dot.add",
    "dot.remove",
    "timer.start",
    "timer.pause",
    "phase.goto",
)
PARTICIPANTS = 20
DEFINITION = "dhs-cx-maturity"
PASSWORD = "bench password 123"  # noqa: S105 - a throwaway database


@dataclass
class Timing:
    n: int = 0
    cpu: float = 0.0
    wall: float = 0.0

    def line(self, kind: str) -> str:
        cpu_us = self.cpu / self.n * 1e6
        wall_us = self.wall / self.n * 1e6
        return f"{kind:<12} {self.n:>6} {cpu_us:>10.0f} {wall_us:>10.0f}"


@dataclass
class Room:
    """A started workshop, its facilitator and participants, and its agenda."""

    live: LiveService
    facilitator: Actor
    participants: list[Actor]
    workshop: Workshop
    phases: tuple[Phase, ...]

    def phase(self, kind: PhaseKind) -> tuple[int, Phase]:
        return next((i, p) for i, p in enumerate(self.phases) if p.kind == kind)

    async def do(self, actor: Actor, command: dict[str, Any]) -> dict[str, Any]:
        outcome = await self.live.handle(actor, parse_command(command))
        return outcome.events[-1] if outcome.events else {}

    async def goto(self, kind: PhaseKind) -> Phase:
        index, phase = self.phase(kind)
        await self.do(self.facilitator, {"type": "phase.goto", "cid": "goto", "index": index})
        return phase


async def _room(app: FastAPI, http: httpx.AsyncClient) -> Room:
    email = f"bench-{secrets.token_hex(4)}@example.gov"
    async with app.state.sessionmaker() as session:
        await create_facilitator(session, email, PASSWORD, "Bench")
    response = await http.post("/api/auth/token", json={"email": email, "password": PASSWORD})
    response.raise_for_status()
    headers = {"Authorization": f"Bearer {response.json()['access_token']}"}
    response = await http.post(
        "/api/workshops", json={"definition": DEFINITION, "title": "Bench"}, headers=headers
    )
    response.raise_for_status()
    created = response.json()
    participants = []
    for i in range(PARTICIPANTS):
        response = await http.post(
            f"/api/workshops/{created['id']}/participants",
            json={"display_name": f"P{i}", "join_code": created["join_code"]},
        )
        response.raise_for_status()
        participant_id = response.json()["participant_id"]
        participants.append(Actor("participant", created["id"], participant_id=participant_id))
    live: LiveService = app.state.live
    async with app.state.sessionmaker() as session:
        workshop = await session.get(Workshop, created["id"])
    assert workshop is not None
    facilitator = Actor("facilitator", workshop.id, facilitator_id="bench")
    room = Room(live, facilitator, participants, workshop, live.cache.get(workshop)[1])
    await room.do(facilitator, {"type": "workshop.start", "cid": "start"})
    return room


Commands = list[tuple[str, Actor, dict[str, Any]]]
# Kinds timed together with the one they undo.
_PAIRED = {"dot.remove": "dot.add", "timer.pause": "timer.start"}


async def _commands(room: Room, kind: str, n: int) -> Commands:
    """The commands to time, in order (setup is done here, untimed)."""
    actors = room.participants
    definition = room.live.cache.get(room.workshop)[0]
    if kind == "card.vote":
        phase = await room.goto(PhaseKind.SORT)
        assert phase.function_id is not None
        cards = definition.function(phase.function_id).cards
        return [
            (
                kind,
                actors[i % len(actors)],
                {
                    "type": kind,
                    "cid": f"c{i}",
                    "card_id": cards[i % len(cards)].id,
                    "choice": ("do", "dont", "unsure")[i % 3],
                },
            )
            for i in range(n)
        ]
    if kind == "level.vote":
        await room.goto(PhaseKind.LEVEL_VOTE)
        levels = len(definition.scale)
        return [
            (kind, actors[i % len(actors)], {"type": kind, "cid": f"c{i}", "level": i % levels})
            for i in range(n)
        ]
    if kind in ("note.create", "note.move", "note.drag"):
        await room.goto(PhaseKind.REFLECT)
        area = definition.board.areas[0].id
        if kind == "note.create":
            return [
                (
                    kind,
                    actors[i % len(actors)],
                    {"type": kind, "cid": f"c{i}", "area": area, "text": f"Note {i}"},
                )
                for i in range(n)
            ]
        note = await room.do(
            actors[0], {"type": "note.create", "cid": "n", "area": area, "text": "Moved"}
        )
        note_id = note["note"]["id"]
        return [
            (
                kind,
                actors[i % len(actors)],
                {"type": kind, "cid": f"c{i}", "note_id": note_id, "x": (i % 90) / 100, "y": 0.5},
            )
            for i in range(n)
        ]
    if kind == "timer.start":
        # The facilitator starts the timer, then pauses it.
        await room.goto(PhaseKind.REFLECT)
        commands: Commands = []
        for i in range(n):
            start = {"type": "timer.start", "cid": f"s{i}", "seconds": 300}
            commands.append(("timer.start", room.facilitator, start))
            commands.append(
                ("timer.pause", room.facilitator, {"type": "timer.pause", "cid": f"p{i}"})
            )
        return commands
    if kind == "phase.goto":
        # The facilitator moves the room between a sort and a reflect phase.
        ends = [room.phase(PhaseKind.SORT)[0], room.phase(PhaseKind.REFLECT)[0]]
        return [
            (kind, room.facilitator, {"type": kind, "cid": f"g{i}", "index": ends[i % 2]})
            for i in range(n)
        ]
    # Dots: every participant adds a dot, then takes it back (within any budget).
    _index, prioritise = room.phase(PhaseKind.PRIORITISE)
    reflect = next(
        p
        for p in room.phases
        if p.kind == PhaseKind.REFLECT and p.function_id == prioritise.function_id
    )
    area = prioritise.area or definition.board.areas[0].id
    await room.do(
        room.facilitator,
        {"type": "phase.goto", "cid": "r", "index": room.phases.index(reflect)},
    )
    note = await room.do(
        actors[0], {"type": "note.create", "cid": "n", "area": area, "text": "Dot me"}
    )
    note_id = note["note"]["id"]
    await room.goto(PhaseKind.PRIORITISE)
    commands = []
    for i in range(n):
        actor = actors[i % len(actors)]
        commands.append(("dot.add", actor, {"type": "dot.add", "cid": f"a{i}", "note_id": note_id}))
        commands.append(
            ("dot.remove", actor, {"type": "dot.remove", "cid": f"r{i}", "note_id": note_id})
        )
    return commands


async def _time(
    room: Room, commands: Commands, timings: dict[str, Timing], gap: float = 0.0
) -> None:
    handle = room.live.handle
    parsed = [(kind, actor, parse_command(command)) for kind, actor, command in commands]
    cpu: Callable[[], float] = time.process_time
    wall: Callable[[], float] = time.perf_counter
    for kind, actor, command in parsed:
        c0, w0 = cpu(), wall()
        await handle(actor, command)
        timing = timings.setdefault(kind, Timing())
        timing.cpu += cpu() - c0
        timing.wall += wall() - w0
        timing.n += 1
        if gap:
            await asyncio.sleep(gap)


async def run(
    database_url: str | None, kinds: list[str], n: int, gap: float = 0.0
) -> dict[str, Timing]:
    with tempfile.TemporaryDirectory() as tmp:
        url = database_url or f"sqlite+aiosqlite:///{tmp}/bench.db"
        engine = make_engine(url)
        await upgrade(engine)
        await engine.dispose()
        settings = Settings(
            database_url=url,
            redis_url=None,
            environment="test",
            secret_key=secrets.token_hex(32),
            public_url="http://testserver",
        )
        app = create_app(settings)
        timings: dict[str, Timing] = {}
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://testserver") as http,
        ):
            for kind in kinds:
                if _PAIRED.get(kind) in kinds:
                    continue  # timed with the command it undoes
                room = await _room(app, http)
                commands = await _commands(room, kind, n)
                await _time(room, commands, timings, gap)
        return timings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.commands", description=__doc__)
    parser.add_argument("--kind", action="append", choices=KINDS, help="repeatable; default all")
    parser.add_argument("--n", type=int, default=2000, help="commands per kind")
    parser.add_argument("--database-url", default=None, help="default: a temporary SQLite file")
    parser.add_argument(
        "--gap",
        type=float,
        default=0.0,
        help="seconds idle between commands, as in a live room (caches go cold); default 0",
    )
    args = parser.parse_args(argv)
    kinds = args.kind or list(KINDS)
    timings = asyncio.run(run(args.database_url, kinds, args.n, args.gap))
    print(f"{'command':<12} {'n':>6} {'cpu us':>10} {'wall us':>10}")
    for kind in KINDS:
        if kind in timings:
            print(timings[kind].line(kind))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
