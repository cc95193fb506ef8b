"""What the load generator is asked to do: a plan, written by the runner as JSON.

The schedule itself is derived from `seed` inside the load generator (bench.loadgen):
the same plan gives the same commands at the same offsets against the floor and the
app, so every figure can be read as a ratio.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# Commands and the stored event each one produces (None: ephemeral, nothing stored).
EVENT_OF: dict[str, str | None] = {
    "workshop.start": "workshop.started",
    "phase.goto": "phase.changed",
    "phase.next": "phase.changed",
    "votes.reveal": "votes.revealed",
    "timer.start": "timer.started",
    "timer.pause": "timer.paused",
    "timer.extend": "timer.extended",
    "card.vote": "card.voted",
    "note.create": "note.created",
    "note.move": "note.moved",
    "note.drag": None,
    "dot.add": "dot.added",
}

REFLECT_PHASE = 4  # measurement.reflect in the default definition (prioritise follows)


@dataclass
class Flow:
    """One workshop's activity: per participant counts, and the pace."""

    card_votes: int = 3  # sort phase: cards each participant votes on (then reveal)
    notes: int = 2  # reflect: notes each participant writes
    drag_sessions: int = 1  # reflect: notes each participant drags (previews, then a move)
    drag_previews: int = 5  # note.drag messages per drag, 10 per second
    dots: int = 3  # prioritise: dots each participant places (the budget is 3)
    rate: float = 0.1  # mean actions per participant per second within a phase (Poisson)
    drag_rate: float = 0.0  # drags started per dragging participant per second (0: `rate`)
    drag_share: float = 1.0  # the share of participants who drag notes
    gap: float = 0.5  # seconds of quiet between phases
    storm_events: int = 0  # > 0: after the flow, everyone drops; this many events; resume
    seed_events: int = 0  # > 0 (S4): instead of the flow, store about this many events
    ramp: list[float] = field(default_factory=list)  # events/s steps of note.move (no flow)
    ramp_seconds: float = 5.0  # length of each ramp step
    # > 0: the facilitator's timer commands per second while participants act (a timer
    # started, then extended): a facilitator's commands in a busy room.
    fac_busy: float = 0.0


@dataclass
class Plan:
    scenario: str
    target: str  # "app" | "floor"
    base: str  # http://127.0.0.1:PORT
    compression: bool
    seed: int
    workshops: int
    participants: int  # per workshop
    flow: Flow
    cards: list[str]
    out: str
    fac_token: str = ""
    server_pid: int = 0
    extra_cpu_names: list[str] = field(default_factory=list)  # e.g. postgres, redis-server
    connect_concurrency: int = 64
    drain_timeout: float = 60.0
    stagger: float = 2.0  # S2: workshops start at seeded offsets within this many seconds

    def dump(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, path: Path) -> Plan:
        data: dict[str, Any] = json.loads(path.read_text())
        data["flow"] = Flow(**data["flow"])
        return cls(**data)
