"""THE wire schema of the WebSocket protocol (documented in docs/protocol.md).

Every message is a JSON object with a `type` tag. Clients send *commands*
(imperative: `note.move`); the server sends *events* (past tense: `note.moved`),
each carrying the workshop's `seq`, plus a few control messages (`hello`, `ack`,
`error`, `snapshot`, `pong`). Every model forbids extra fields, so a typo is an
error rather than silently ignored.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

# No NUL in strings that reach the database: PostgreSQL text cannot hold it.
NO_NUL = r"^[^\x00]*$"
Id = Annotated[str, Field(min_length=1, max_length=64, pattern=NO_NUL)]
Coord = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
NoteText = Annotated[str, Field(min_length=1, max_length=500)]
Label = Annotated[str, Field(min_length=1, max_length=120)]
Decision = Annotated[str, Field(max_length=2000, pattern=NO_NUL)]
CardNote = Annotated[str, Field(max_length=1000, pattern=NO_NUL)]  # its column is shorter
Choice = Literal["do", "dont", "unsure"]
Audience = Literal["facilitator", "participant", "projector"]


class Command(BaseModel):
    """Base of every command. `cid` is the client's id for the command, echoed in
    its `ack` or `error`; `ts` is an opaque client timestamp echoed in the event."""

    model_config = ConfigDict(extra="forbid", strict=True)
    cid: Annotated[str, Field(max_length=64)] | None = None
    ts: Annotated[float, Field(allow_inf_nan=False)] | None = None


# --- facilitation (facilitator only) ------------------------------------------------


class StartWorkshop(Command):
    type: Literal["workshop.start"]


class NextPhase(Command):
    type: Literal["phase.next"]


class PreviousPhase(Command):
    type: Literal["phase.previous"]


class GotoPhase(Command):
    type: Literal["phase.goto"]
    index: Annotated[int, Field(ge=0, le=10_000)]


class StartTimer(Command):
    type: Literal["timer.start"]
    seconds: Annotated[int, Field(ge=10, le=4 * 3600)] | None = None


class PauseTimer(Command):
    type: Literal["timer.pause"]


class ExtendTimer(Command):
    type: Literal["timer.extend"]
    seconds: Annotated[int, Field(ge=10, le=3600)]


class LockInput(Command):
    type: Literal["input.lock"]


class UnlockInput(Command):
    type: Literal["input.unlock"]


class RevealVotes(Command):
    type: Literal["votes.reveal"]


class HideVotes(Command):
    type: Literal["votes.hide"]


class OpenLevelRound(Command):
    type: Literal["level_round.open"]


class SettleCard(Command):
    type: Literal["card.settle"]
    card_id: Id
    practised: bool
    note: CardNote | None = None


class RecordLevel(Command):
    type: Literal["level.record"]
    function_id: Id
    level: Annotated[int, Field(ge=0, le=20)]
    note: Decision | None = None


class SetAnonymity(Command):
    type: Literal["anonymity.set"]
    anonymous: bool


class SpotlightTarget(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    kind: Literal["card", "note", "group", "area"]
    id: Id


class SetSpotlight(Command):
    type: Literal["spotlight.set"]
    target: SpotlightTarget | None


class SetDotBudget(Command):
    type: Literal["dots.set_budget"]
    budget: Annotated[int, Field(ge=0, le=50)]


class RemoveParticipant(Command):
    type: Literal["participant.remove"]
    participant_id: Id


class EndWorkshop(Command):
    type: Literal["workshop.end"]


# --- participation -------------------------------------------------------------------


class VoteCard(Command):
    type: Literal["card.vote"]
    card_id: Id
    choice: Choice


class VoteLevel(Command):
    type: Literal["level.vote"]
    level: Annotated[int, Field(ge=0, le=20)]


class CreateNote(Command):
    type: Literal["note.create"]
    area: Id
    text: NoteText
    colour: Id | None = None
    # Where on the area's canvas (0..1); left out, the server finds a free spot.
    x: Coord | None = None
    y: Coord | None = None


class EditNote(Command):
    type: Literal["note.edit"]
    note_id: Id
    text: NoteText


class MoveNote(Command):
    type: Literal["note.move"]
    note_id: Id
    x: Coord
    y: Coord
    area: Id | None = None


class DragNote(Command):
    """A throwaway position while dragging: published to the room, never stored."""

    type: Literal["note.drag"]
    note_id: Id
    x: Coord
    y: Coord


class RecolourNote(Command):
    type: Literal["note.recolour"]
    note_id: Id
    colour: Id


class DeleteNote(Command):
    type: Literal["note.delete"]
    note_id: Id


class CreateGroup(Command):
    type: Literal["group.create"]
    area: Id
    label: Label
    note_ids: Annotated[list[Id], Field(max_length=100)] = []


class RenameGroup(Command):
    type: Literal["group.rename"]
    group_id: Id
    label: Label


class DeleteGroup(Command):
    type: Literal["group.delete"]
    group_id: Id


class GroupNote(Command):
    type: Literal["note.group"]
    note_id: Id
    group_id: Id | None


class AddDot(Command):
    type: Literal["dot.add"]
    note_id: Id


class RemoveDot(Command):
    type: Literal["dot.remove"]
    note_id: Id


class SetPresence(Command):
    type: Literal["presence.set"]
    status: Literal["online", "away"]


class Sync(Command):
    """Ask for every event after `last_seq` (or a snapshot when too far behind)."""

    type: Literal["sync"]
    last_seq: Annotated[int, Field(ge=0)]


class Ping(Command):
    type: Literal["ping"]


FacilitatorCommand = (
    StartWorkshop
    | NextPhase
    | PreviousPhase
    | GotoPhase
    | StartTimer
    | PauseTimer
    | ExtendTimer
    | LockInput
    | UnlockInput
    | RevealVotes
    | HideVotes
    | OpenLevelRound
    | SettleCard
    | RecordLevel
    | SetAnonymity
    | SetSpotlight
    | SetDotBudget
    | RemoveParticipant
    | EndWorkshop
)
ParticipantCommand = (
    VoteCard
    | VoteLevel
    | CreateNote
    | EditNote
    | MoveNote
    | DragNote
    | RecolourNote
    | DeleteNote
    | CreateGroup
    | RenameGroup
    | DeleteGroup
    | GroupNote
    | AddDot
    | RemoveDot
)
SessionCommand = SetPresence | Sync | Ping
AnyCommand = Annotated[
    FacilitatorCommand | ParticipantCommand | SessionCommand, Field(discriminator="type")
]
COMMANDS: TypeAdapter[AnyCommand] = TypeAdapter(AnyCommand)


def _tags(union: Any) -> frozenset[str]:
    return frozenset(model.model_fields["type"].annotation.__args__[0] for model in union.__args__)


FACILITATOR_ONLY: frozenset[str] = _tags(FacilitatorCommand)
PARTICIPANT_COMMANDS: frozenset[str] = _tags(ParticipantCommand)
COMMAND_TYPES: frozenset[str] = FACILITATOR_ONLY | PARTICIPANT_COMMANDS | _tags(SessionCommand)


def parse_command(data: Any) -> AnyCommand:
    """Validate a decoded JSON value as a command (raises pydantic.ValidationError)."""
    return COMMANDS.validate_python(data)


# --- events (server -> client) ---------------------------------------------------------


class Event(BaseModel):
    """Base of every event: `seq` numbers the workshop's stored events without holes;
    `actor` is "facilitator", a participant id, or null (hidden by anonymity, or the
    server); `cid`/`ts` echo the command that caused it."""

    model_config = ConfigDict(extra="forbid")
    seq: int
    actor: str | None = None
    at: str
    cid: str | None = None
    ts: float | None = None


class PhaseState(BaseModel):
    model_config = ConfigDict(extra="forbid")
    index: int
    key: str
    kind: str
    title: str
    function_id: str | None
    area: str | None = None
    dot_budget: int | None = None
    minutes: int | None = None


class TimerState(BaseModel):
    model_config = ConfigDict(extra="forbid")
    running: bool
    ends_at: str | None
    remaining_s: int | None


class NoteOut(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    function_id: str
    area: str
    text: str
    colour: str
    x: float
    y: float
    group_id: str | None
    author_id: str | None
    dots: int = 0


class GroupOut(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    function_id: str
    area: str
    label: str


class ParticipantOut(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    display_name: str | None
    organisation: str | None = None


class WorkshopCreated(Event):
    """Always seq 1: written when the facilitator creates the workshop (over HTTP)."""

    type: Literal["workshop.created"]
    title: str
    definition_id: str


class WorkshopStarted(Event):
    type: Literal["workshop.started"]
    phase: PhaseState


class PhaseChanged(Event):
    type: Literal["phase.changed"]
    phase: PhaseState
    timer: TimerState


class TimerStarted(Event):
    type: Literal["timer.started"]
    timer: TimerState


class TimerPaused(Event):
    type: Literal["timer.paused"]
    timer: TimerState


class TimerExtended(Event):
    type: Literal["timer.extended"]
    timer: TimerState


class InputLocked(Event):
    type: Literal["input.locked"]


class InputUnlocked(Event):
    type: Literal["input.unlocked"]


class VotesRevealed(Event):
    type: Literal["votes.revealed"]
    scope: Literal["cards", "level"]
    function_id: str
    round: int | None = None
    results: dict[str, Any]


class VotesHidden(Event):
    type: Literal["votes.hidden"]
    scope: Literal["cards", "level"]
    function_id: str
    round: int | None = None


class LevelRoundOpened(Event):
    type: Literal["level_round.opened"]
    function_id: str
    round: int


class CardSettled(Event):
    type: Literal["card.settled"]
    function_id: str
    card_id: str
    practised: bool
    note: str | None


class LevelRecorded(Event):
    type: Literal["level.recorded"]
    function_id: str
    level: int
    level_name: str
    note: str | None
    signals: dict[str, Any]


class AnonymityChanged(Event):
    type: Literal["anonymity.changed"]
    anonymous: bool


class SpotlightChanged(Event):
    type: Literal["spotlight.changed"]
    target: SpotlightTarget | None


class DotBudgetSet(Event):
    type: Literal["dots.budget_set"]
    phase_key: str
    budget: int


class ParticipantJoined(Event):
    type: Literal["participant.joined"]
    participant: ParticipantOut


class ParticipantRemoved(Event):
    type: Literal["participant.removed"]
    participant_id: str


class WorkshopEnded(Event):
    type: Literal["workshop.ended"]


class CardVoted(Event):
    """Progress only: who voted (unless anonymous), never what."""

    type: Literal["card.voted"]
    function_id: str
    card_id: str
    participant_id: str | None
    voters: int


class LevelVoted(Event):
    type: Literal["level.voted"]
    function_id: str
    round: int
    participant_id: str | None
    voters: int


class NoteCreated(Event):
    type: Literal["note.created"]
    note: NoteOut


class NoteEdited(Event):
    type: Literal["note.edited"]
    note_id: str
    text: str


class NoteMoved(Event):
    type: Literal["note.moved"]
    note_id: str
    x: float
    y: float
    area: str


class NoteRecoloured(Event):
    type: Literal["note.recoloured"]
    note_id: str
    colour: str


class NoteDeleted(Event):
    type: Literal["note.deleted"]
    note_id: str


class NoteGrouped(Event):
    type: Literal["note.grouped"]
    note_id: str
    group_id: str | None


class GroupCreated(Event):
    type: Literal["group.created"]
    group: GroupOut
    note_ids: list[str]


class GroupRenamed(Event):
    type: Literal["group.renamed"]
    group_id: str
    label: str


class GroupDeleted(Event):
    type: Literal["group.deleted"]
    group_id: str


class DotAdded(Event):
    type: Literal["dot.added"]
    note_id: str
    participant_id: str | None
    dots: int


class DotRemoved(Event):
    type: Literal["dot.removed"]
    note_id: str
    participant_id: str | None
    dots: int


# Ephemeral events: published, never stored; `seq` is the last stored seq (unchanged).
class NoteDragging(Event):
    type: Literal["note.dragging"]
    note_id: str
    x: float
    y: float


class PresenceChanged(Event):
    type: Literal["participant.presence"]
    participant_id: str
    status: Literal["online", "away", "offline"]
    # Higher is newer: a room applies no older word than it has (app.realtime.presence).
    version: int = 0


AnyEvent = Annotated[
    WorkshopCreated
    | WorkshopStarted
    | PhaseChanged
    | TimerStarted
    | TimerPaused
    | TimerExtended
    | InputLocked
    | InputUnlocked
    | VotesRevealed
    | VotesHidden
    | LevelRoundOpened
    | CardSettled
    | LevelRecorded
    | AnonymityChanged
    | SpotlightChanged
    | DotBudgetSet
    | ParticipantJoined
    | ParticipantRemoved
    | WorkshopEnded
    | CardVoted
    | LevelVoted
    | NoteCreated
    | NoteEdited
    | NoteMoved
    | NoteRecoloured
    | NoteDeleted
    | NoteGrouped
    | GroupCreated
    | GroupRenamed
    | GroupDeleted
    | DotAdded
    | DotRemoved
    | NoteDragging
    | PresenceChanged,
    Field(discriminator="type"),
]
EVENTS: TypeAdapter[AnyEvent] = TypeAdapter(AnyEvent)
EPHEMERAL_EVENTS = frozenset({"note.dragging", "participant.presence"})


class Batch(BaseModel):
    """Several events in one frame (heard within one tick, for one audience), in seq
    order. `from`: the first stored seq it covers (null: ephemeral events only);
    `seq`: the highest seq it names. Every stored seq from `from` up to its last stored
    event is covered: vote progress superseded within the batch is left out for
    audiences that see totals only."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    type: Literal["batch"]
    from_: int | None = Field(alias="from")
    seq: int
    events: list[AnyEvent]


# --- control messages (server -> one client) ---------------------------------------------


class Ack(BaseModel):
    """The command `cid` was committed as event `seq` (null for ephemeral commands)."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["ack"] = "ack"
    cid: str | None
    seq: int | None
    result: dict[str, Any] = {}


class ErrorMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["error"] = "error"
    cid: str | None = None
    code: str
    message: str


class Pong(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["pong"] = "pong"
    cid: str | None = None
    seq: int
