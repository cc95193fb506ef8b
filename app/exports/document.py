"""The JSON export document: one typed model for export, import and the JSON Schema.

The export writes an :class:`ExportDocument`; the import parses one; ``docs/export.schema.json``
is generated from it (``python -m app.exports.schema``), so the three can never disagree.

References inside the document are ordinal ids (``p1``, ``n3``, ``g2``), not database ids:
an exported workshop, imported elsewhere and exported again, gives the same bytes. See
``docs/exports.md`` for the field reference and the ordering rules.
"""

from __future__ import annotations

import unicodedata
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
)

SCHEMA_VERSION = 1
DOCUMENT_KIND = "cx-maturity-workshop"
# Generous limits: a large workshop has a few hundred of each; they stop a hostile
# document from tying up the server, not real use.
MAX_PARTICIPANTS = 2_000
MAX_ROWS = 100_000


IMPORTING = {"importing": True}


def _no_control_characters(value: str, info: ValidationInfo) -> str:
    # The live engine refuses control and format characters in people's text; an import
    # (validated with context=IMPORTING) is held to the same rule so nothing a room could
    # not type gets in. Exports are not: whatever is stored must always come out.
    importing = isinstance(info.context, dict) and info.context.get("importing")
    if importing and any(unicodedata.category(ch) in {"Cc", "Cf"} for ch in value):
        raise ValueError("contains control characters")
    return value


_Plain = AfterValidator(_no_control_characters)
Title = Annotated[str, StringConstraints(min_length=1, max_length=200), _Plain]
Name = Annotated[str, StringConstraints(min_length=1, max_length=60), _Plain]
Organisation = Annotated[str, StringConstraints(min_length=1, max_length=120), _Plain]
Label = Annotated[str, StringConstraints(min_length=1, max_length=120), _Plain]
NoteText = Annotated[str, StringConstraints(min_length=1, max_length=500), _Plain]
CardNote = Annotated[str, StringConstraints(max_length=1000), _Plain]
LevelNote = Annotated[str, StringConstraints(max_length=2000), _Plain]

Slug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]+(?:-[a-z0-9]+)*$", max_length=64)]
ParticipantRef = Annotated[str, StringConstraints(pattern=r"^p[1-9][0-9]{0,5}$")]
NoteRef = Annotated[str, StringConstraints(pattern=r"^n[1-9][0-9]{0,5}$")]
GroupRef = Annotated[str, StringConstraints(pattern=r"^g[1-9][0-9]{0,5}$")]
Author = ParticipantRef | Literal["facilitator"]
Level = Annotated[int, Field(ge=0, le=6)]
Round = Annotated[int, Field(ge=1, le=50)]
Coordinate = Annotated[float, Field(allow_inf_nan=False)]


class Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class WorkshopInfo(Model):
    title: Title
    definition_id: Slug
    state: Literal["lobby", "running", "ended"]
    anonymous: bool
    dot_budget: Annotated[int, Field(ge=0, le=50)]
    phase_budgets: dict[Annotated[str, StringConstraints(max_length=96)], int]
    current_phase: Annotated[int, Field(ge=0)]
    revealed: list[Annotated[str, StringConstraints(max_length=200)]]
    created_at: AwareDatetime
    started_at: AwareDatetime | None
    ended_at: AwareDatetime | None


class ParticipantOut(Model):
    """``display_name``, ``organisation``, ``joined_at`` and ``removed_at`` are null when
    the workshop is anonymous: the person is then only "Participant <n>"."""

    id: ParticipantRef
    display_name: Name | None
    organisation: Organisation | None
    joined_at: AwareDatetime | None
    removed: bool
    removed_at: AwareDatetime | None


class LevelRoundOut(Model):
    function_id: Slug
    round: Round
    opened_at: AwareDatetime
    revealed_at: AwareDatetime | None


class CardVoteOut(Model):
    participant: ParticipantRef
    function_id: Slug
    card_id: Slug
    choice: Literal["do", "dont", "unsure"]
    updated_at: AwareDatetime


class LevelVoteOut(Model):
    participant: ParticipantRef
    function_id: Slug
    round: Round
    level: Level
    updated_at: AwareDatetime


class NoteGroupOut(Model):
    id: GroupRef
    function_id: Slug
    area: Slug
    label: Label
    x: Coordinate
    y: Coordinate
    created_at: AwareDatetime


class DotOut(Model):
    participant: ParticipantRef
    phase_key: Annotated[str, StringConstraints(min_length=1, max_length=96)]
    created_at: AwareDatetime


class NoteOut(Model):
    id: NoteRef
    function_id: Slug
    area: Slug
    text: NoteText
    colour: Slug
    x: Coordinate
    y: Coordinate
    group: GroupRef | None
    author: Author | None
    created_at: AwareDatetime
    updated_at: AwareDatetime
    dots: list[DotOut] = Field(max_length=MAX_ROWS)


class CardDecisionOut(Model):
    function_id: Slug
    card_id: Slug
    practised: bool
    note: CardNote | None
    decided_at: AwareDatetime


class LevelDecisionOut(Model):
    function_id: Slug
    level: Level
    note: LevelNote | None
    # The signals as they stood when the level was recorded (see docs/scoring.md).
    signals: dict[str, Any]
    recorded_at: AwareDatetime


# --- scores: derived data, recomputed on import, so new fields are tolerated ------------


class ScoreModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class VotedScore(ScoreModel):
    level: int | None
    level_name: str | None
    agreement: float | None
    modal_share: float | None
    modal_level: int | None
    modal_level_name: str | None
    n_voters: int
    counts: list[int]
    low_agreement: bool


class CardLevelScore(ScoreModel):
    level: int | None
    level_name: str | None
    score: float
    practised: dict[str, bool | None]
    n_cards_voted: int


class FunctionScore(ScoreModel):
    function_id: str
    function_name: str
    outcome_level: int | None
    outcome_level_name: str | None
    recorded_level: int | None
    recorded_level_name: str | None
    recorded_note: str | None
    card_level: CardLevelScore
    voted: VotedScore
    rounds: list[VotedScore]


class Reliability(ScoreModel):
    krippendorff_alpha: float | None


class Scores(ScoreModel):
    scale: list[str]
    functions: list[FunctionScore]
    reliability: Reliability


class ExportDocument(Model):
    """Everything a workshop produced. Lists are in the documented, content-based order."""

    schema_version: Literal[1]
    kind: Literal["cx-maturity-workshop"]
    workshop: WorkshopInfo
    definition: dict[str, Any]
    participants: list[ParticipantOut] = Field(max_length=MAX_PARTICIPANTS)
    level_rounds: list[LevelRoundOut] = Field(max_length=MAX_ROWS)
    card_votes: list[CardVoteOut] = Field(max_length=MAX_ROWS)
    level_votes: list[LevelVoteOut] = Field(max_length=MAX_ROWS)
    note_groups: list[NoteGroupOut] = Field(max_length=MAX_ROWS)
    notes: list[NoteOut] = Field(max_length=MAX_ROWS)
    card_decisions: list[CardDecisionOut] = Field(max_length=MAX_ROWS)
    level_decisions: list[LevelDecisionOut] = Field(max_length=MAX_ROWS)
    scores: Scores


def json_schema() -> dict[str, Any]:
    """The JSON Schema of :class:`ExportDocument`, as published in ``docs/export.schema.json``."""
    schema = ExportDocument.model_json_schema(mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **schema,
        "title": "CX maturity workshop export",
        "description": (
            f"schema_version {SCHEMA_VERSION}: everything one workshop produced. "
            "Field reference: docs/exports.md."
        ),
    }
