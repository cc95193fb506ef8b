"""What every live command handler works with: who acts, the workshop, the agenda.

Each command reads AUTH (role), VALIDATE (state, phase, ids), RESOLVE (write rows and
emit events) inside one transaction; `app.services.live.engine` commits and then
publishes. A handler that refuses raises `Rejected`, and nothing it wrote is kept.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from sqlmodel.ext.asyncio.session import AsyncSession

from app.db.models import Workshop
from app.domain.definitions import Definition, Phase, PhaseKind
from app.realtime.messages import PhaseState, TimerState
from app.services.events import append_event


class Rejected(Exception):
    """A command refused; `code` is stable, `message` is for the person who sent it."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Actor:
    role: Literal["facilitator", "participant"]
    workshop_id: str
    participant_id: str | None = None
    facilitator_id: str | None = None

    @property
    def is_facilitator(self) -> bool:
        return self.role == "facilitator"

    @property
    def wire(self) -> str:
        """How events name this actor: "facilitator" or the participant id."""
        return "facilitator" if self.is_facilitator else str(self.participant_id)

    @property
    def log_tag(self) -> str:
        if self.is_facilitator:
            return f"facilitator:{self.facilitator_id}"
        return f"participant:{self.participant_id}"


@dataclass
class Ctx:
    session: AsyncSession
    workshop: Workshop
    definition: Definition
    phases: tuple[Phase, ...]
    actor: Actor
    now: datetime
    cid: str | None = None
    ts: float | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    result: dict[str, Any] = field(default_factory=dict)
    # The number taken with the workshop row when the command began (engine._context):
    # the first event gets it, any further event takes the next one.
    reserved_seq: int | None = None

    @property
    def phase(self) -> Phase:
        return self.phases[self.workshop.current_phase]

    def require_phase(self, *kinds: PhaseKind, what: str) -> Phase:
        phase = self.phase
        if self.workshop.state != "running" or phase.kind not in kinds:
            allowed = " or ".join(k.value.replace("_", " ") for k in kinds)
            raise Rejected("wrong_phase", f"{what} is possible only in the {allowed} phase")
        return phase

    def require_participant(self, what: str) -> str:
        if self.actor.participant_id is None:
            raise Rejected("participants_only", f"only participants can {what}")
        return self.actor.participant_id

    async def emit(self, type_: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Append an event to the log in this transaction; returns the full message."""
        seq, self.reserved_seq = self.reserved_seq, None
        event = await append_event(
            self.session, self.workshop.id, type_, payload, self.actor.log_tag, seq=seq
        )
        message = {
            "type": type_,
            "seq": event.seq,
            "actor": self.actor.wire,
            "at": self.now.isoformat(),
            "cid": self.cid,
            "ts": self.ts,
            **payload,
        }
        self.events.append(message)
        return message


def phase_state(phases: tuple[Phase, ...], index: int) -> PhaseState:
    phase = phases[index]
    return PhaseState(
        index=index,
        key=phase.key,
        kind=phase.kind.value,
        title=phase.title,
        function_id=phase.function_id,
        area=phase.area,
        dot_budget=phase.dot_budget,
        minutes=phase.minutes,
    )


def timer_state(workshop: Workshop, now: datetime) -> TimerState:
    return timer_of(workshop.timer_ends_at, workshop.timer_remaining_s, now)


def timer_of(ends_at: datetime | None, remaining_s: int | None, now: datetime) -> TimerState:
    """The timer as of `now`, from a workshop's `timer_ends_at` and `timer_remaining_s`."""
    if ends_at is not None:
        remaining = max(0, math.ceil((ends_at - now).total_seconds()))
        return TimerState(running=True, ends_at=ends_at.isoformat(), remaining_s=remaining)
    return TimerState(running=False, ends_at=None, remaining_s=remaining_s)


# A command's handler: it changes the workshop through `Ctx` and emits its events.
Handler = Callable[[Ctx, Any], Coroutine[Any, Any, None]]


def utcnow() -> datetime:
    return datetime.now(UTC)
