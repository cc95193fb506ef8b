"""The tables. Everything a workshop produces lives here, plus its event log.

Enumerated values (workshop state, card choices, note areas) are stored as short
strings and checked in the domain layer and by CHECK constraints, which keeps the
migrations portable between SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    String,
    Table,
    UniqueConstraint,
)
from sqlmodel import Field, SQLModel

from app.db.types import UTCDateTime, new_id, utcnow

# Stable constraint names, so that migrations can alter them on every backend.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

WORKSHOP_STATES = ("lobby", "running", "ended")
CARD_CHOICES = ("do", "dont", "unsure")


def _fk(target: str, *, nullable: bool = False, ondelete: str = "CASCADE") -> Any:
    return Field(
        sa_column=Column(
            String(32), ForeignKey(target, ondelete=ondelete), nullable=nullable, index=True
        )
    )


def _ts(*, nullable: bool = False) -> Any:
    if nullable:
        return Field(default=None, sa_type=UTCDateTime, nullable=True)
    return Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


def _json() -> Any:
    return Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class Facilitator(SQLModel, table=True):
    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    email: str = Field(max_length=254, unique=True)
    display_name: str = Field(max_length=120)
    password_hash: str = Field(max_length=255)
    created_at: datetime = _ts()


class Workshop(SQLModel, table=True):
    __table_args__ = (
        CheckConstraint("state IN ('lobby', 'running', 'ended')", name="state"),
        CheckConstraint("dot_budget >= 0", name="dot_budget"),
        CheckConstraint("seq >= 0", name="seq"),
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    facilitator_id: str = _fk("facilitator.id", ondelete="RESTRICT")
    title: str = Field(max_length=200)
    definition_id: str = Field(max_length=64)
    # The whole definition as it was when the workshop was created: editing a YAML
    # file later never changes a workshop that already ran.
    definition: dict[str, Any] = _json()
    join_code: str = Field(max_length=16, unique=True)
    state: str = Field(default="lobby", max_length=16)
    current_phase: int = 0
    # Last event number handed out; bumped with UPDATE ... RETURNING (see services.events).
    seq: int = 0
    anonymous: bool = False
    dot_budget: int = 3
    input_locked: bool = False
    # What the facilitator has revealed: "cards:<function_id>", "level:<function_id>:<round>".
    revealed: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    # Dot budget per prioritise phase key, when the facilitator changed the default.
    phase_budgets: dict[str, int] = _json()
    timer_ends_at: datetime | None = _ts(nullable=True)
    timer_remaining_s: int | None = None
    spotlight: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    created_at: datetime = _ts()
    started_at: datetime | None = _ts(nullable=True)
    ended_at: datetime | None = _ts(nullable=True)


class Participant(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("workshop_id", "name_key"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    workshop_id: str = _fk("workshop.id")
    display_name: str = Field(max_length=60)
    # Case- and space-folded display name: two people cannot both be "Sam Lee".
    name_key: str = Field(max_length=60)
    organisation: str | None = Field(default=None, max_length=120)
    joined_at: datetime = _ts()
    removed_at: datetime | None = _ts(nullable=True)


class CardVote(SQLModel, table=True):
    __table_args__ = (
        UniqueConstraint("workshop_id", "participant_id", "card_id"),
        CheckConstraint("choice IN ('do', 'dont', 'unsure')", name="choice"),
        # A vote counts the card's voters (`voters_on_card`): found by card, not by
        # scanning every vote of the workshop.
        Index("ix_cardvote_workshop_id_card_id", "workshop_id", "card_id", "participant_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    workshop_id: str = _fk("workshop.id")
    participant_id: str = _fk("participant.id")
    function_id: str = Field(max_length=64)
    card_id: str = Field(max_length=64)
    choice: str = Field(max_length=8)
    updated_at: datetime = _ts()


class LevelRound(SQLModel, table=True):
    """A round of the private level vote for one core function (Delphi style)."""

    __table_args__ = (
        UniqueConstraint("workshop_id", "function_id", "number"),
        CheckConstraint("number >= 1", name="number"),
    )

    id: int | None = Field(default=None, primary_key=True)
    workshop_id: str = _fk("workshop.id")
    function_id: str = Field(max_length=64)
    number: int = 1
    opened_at: datetime = _ts()
    revealed_at: datetime | None = _ts(nullable=True)


class LevelVote(SQLModel, table=True):
    __table_args__ = (
        UniqueConstraint("workshop_id", "participant_id", "function_id", "round"),
        CheckConstraint("round >= 1", name="round"),
        CheckConstraint("level >= 0", name="level"),
    )

    id: int | None = Field(default=None, primary_key=True)
    workshop_id: str = _fk("workshop.id")
    participant_id: str = _fk("participant.id")
    function_id: str = Field(max_length=64)
    round: int = 1
    # Index into the definition's scale, 0 = lowest level.
    level: int
    updated_at: datetime = _ts()


class NoteGroup(SQLModel, table=True):
    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    workshop_id: str = _fk("workshop.id")
    function_id: str = Field(max_length=64)
    area: str = Field(max_length=32)
    label: str = Field(max_length=120)
    x: float = 0.0
    y: float = 0.0
    created_at: datetime = _ts()


class Note(SQLModel, table=True):
    # A new note counts the notes in its area for a free spot (`_free_spot`): from the
    # index alone, not by reading every note of the workshop.
    __table_args__ = (
        Index("ix_note_workshop_id_function_id_area", "workshop_id", "function_id", "area"),
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    workshop_id: str = _fk("workshop.id")
    function_id: str = Field(max_length=64)
    area: str = Field(max_length=32)
    text: str = Field(max_length=500)
    colour: str = Field(default="yellow", max_length=16)
    x: float = 0.0
    y: float = 0.0
    group_id: str | None = _fk("notegroup.id", nullable=True, ondelete="SET NULL")
    # NULL author_id with a facilitator_id means the facilitator wrote it.
    author_id: str | None = _fk("participant.id", nullable=True, ondelete="SET NULL")
    facilitator_id: str | None = _fk("facilitator.id", nullable=True, ondelete="SET NULL")
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


class DotVote(SQLModel, table=True):
    """One dot. A person may stack several dots on one note, within the budget."""

    id: int | None = Field(default=None, primary_key=True)
    workshop_id: str = _fk("workshop.id")
    note_id: str = _fk("note.id")
    participant_id: str = _fk("participant.id")
    phase_key: str = Field(max_length=96)
    created_at: datetime = _ts()


class CardDecision(SQLModel, table=True):
    """A contested card settled by the facilitator after discussion."""

    __table_args__ = (UniqueConstraint("workshop_id", "card_id"),)

    id: int | None = Field(default=None, primary_key=True)
    workshop_id: str = _fk("workshop.id")
    function_id: str = Field(max_length=64)
    card_id: str = Field(max_length=64)
    practised: bool
    note: str | None = Field(default=None, max_length=1000)
    decided_at: datetime = _ts()


class LevelDecision(SQLModel, table=True):
    """The level the room agreed for a core function: the outcome of the workshop.

    `signals` keeps the card-derived level and the vote statistics as they stood
    when the level was recorded, so the record shows what the decision was based on.
    """

    __table_args__ = (
        UniqueConstraint("workshop_id", "function_id"),
        CheckConstraint("level >= 0", name="level"),
    )

    id: int | None = Field(default=None, primary_key=True)
    workshop_id: str = _fk("workshop.id")
    function_id: str = Field(max_length=64)
    level: int
    note: str | None = Field(default=None, max_length=2000)
    signals: dict[str, Any] = _json()
    recorded_at: datetime = _ts()


class Event(SQLModel, table=True):
    """Append-only log: every accepted change, numbered per workshop without holes."""

    __table_args__ = (
        UniqueConstraint("workshop_id", "seq"),
        Index("ix_event_workshop_type", "workshop_id", "type"),
    )

    id: int | None = Field(default=None, primary_key=True)
    workshop_id: str = Field(
        sa_column=Column(String(32), ForeignKey("workshop.id", ondelete="CASCADE"), nullable=False)
    )
    seq: int
    type: str = Field(max_length=64)
    payload: dict[str, Any] = _json()
    actor: str | None = Field(default=None, max_length=80)
    created_at: datetime = _ts()


def table_of(model: type[SQLModel]) -> Table:
    """The Core table of a model, for statements built once and run without the ORM."""
    table = model.__table__  # type: ignore[attr-defined]
    assert isinstance(table, Table)
    return table
