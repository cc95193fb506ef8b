"""What a room remembers to let drag previews through without the database.

A `note.drag` is a throwaway position: it is published, never stored. Checking one
against the database (workshop, participant, note: three reads) made every preview
cost as much as a stored command. The room already relays every stored event, so it
can keep the few facts a drag depends on: the workshop's state and input lock, the
current phase's kind, the workshop's note ids and its removed participants.

The memory only ever *admits* a drag. Whenever it cannot (not loaded yet, the phase
or the note does not fit, a removed participant), the caller runs the full check
against the database, which gives the exact refusal. A gap in the stored events the
room hears (a lost publish) or a hub resync forgets everything until the next load.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.db.models import Note, Participant, Workshop
from app.domain.phases import PhaseKind

BOARD_KINDS = frozenset({PhaseKind.REFLECT.value})
FACILITATOR_BOARD_KINDS = frozenset({PhaseKind.REFLECT.value, PhaseKind.PRIORITISE.value})
# Stored events that change what the gate knows; every other stored event only moves seq.
_TRACKED = frozenset(
    {
        "workshop.started",
        "phase.changed",
        "input.locked",
        "input.unlocked",
        "workshop.ended",
        "note.created",
        "note.deleted",
        "participant.removed",
    }
)


class DragGate:
    def __init__(self) -> None:
        self.loaded = False
        self.seq = 0  # the stored seq this memory is up to
        self.state = "lobby"
        self.locked = False
        self.phase_kind = ""
        self.notes: set[str] = set()
        self.removed: set[str] = set()
        # While a load is in flight, stored events heard meanwhile are kept here and
        # applied on top of what was read (each is idempotent).
        self._pending: list[dict[str, Any]] | None = None

    def admits(self, participant_id: str | None, note_id: str) -> bool:
        """True when a drag of `note_id` by this actor certainly passes the checks."""
        if not self.loaded or self.state != "running" or note_id not in self.notes:
            return False
        if participant_id is None:
            return self.phase_kind in FACILITATOR_BOARD_KINDS
        if self.locked or participant_id in self.removed:
            return False
        return self.phase_kind in BOARD_KINDS

    def forget(self) -> None:
        self.loaded = False

    def hear(self, message: dict[str, Any]) -> None:
        """A stored event relayed by the room (in seq order)."""
        if self._pending is not None:
            self._pending.append(message)
            return
        if not self.loaded:
            return
        self._next(message)

    def _next(self, message: dict[str, Any]) -> None:
        seq = int(message["seq"])
        if seq <= self.seq:
            return
        if seq != self.seq + 1:
            self.loaded = False  # a publish was lost: what it changed is unknown
            return
        self._apply(message)

    def _apply(self, message: dict[str, Any]) -> None:
        self.seq = int(message["seq"])
        type_ = message["type"]
        if type_ not in _TRACKED:
            return
        if type_ in ("workshop.started", "phase.changed"):
            self.state = "running"
            self.phase_kind = str(message["phase"]["kind"])
        elif type_ == "input.locked":
            self.locked = True
        elif type_ == "input.unlocked":
            self.locked = False
        elif type_ == "workshop.ended":
            self.state = "ended"
        elif type_ == "note.created":
            self.notes.add(str(message["note"]["id"]))
        elif type_ == "note.deleted":
            self.notes.discard(str(message["note_id"]))
        elif type_ == "participant.removed":
            self.removed.add(str(message["participant_id"]))

    async def load(
        self,
        session: AsyncSession,
        workshop_id: str,
        phase_kinds: Callable[[Workshop], list[str]],
    ) -> None:
        """Read the facts from the database; `phase_kinds`: a workshop's phases' kinds."""
        if self._pending is not None:
            return  # a load is in flight already
        self._pending = []
        try:
            workshop = await session.get(Workshop, workshop_id)
            if workshop is None:
                return
            notes = await session.exec(select(Note.id).where(col(Note.workshop_id) == workshop_id))
            removed = await session.exec(
                select(Participant.id).where(
                    col(Participant.workshop_id) == workshop_id,
                    col(Participant.removed_at).is_not(None),
                )
            )
            self.seq = workshop.seq
            self.state = workshop.state
            self.locked = workshop.input_locked
            kinds, index = phase_kinds(workshop), workshop.current_phase
            self.phase_kind = kinds[index] if 0 <= index < len(kinds) else ""
            self.notes = set(notes.all())
            self.removed = set(removed.all())
            heard, self._pending = self._pending, None
            self.loaded = True
            for message in heard:
                if self.loaded:
                    self._next(message)
        finally:
            self._pending = None
