"""Participant commands: card and level votes, sticky notes, groups, dot votes."""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, insert
from sqlalchemy import select as sa_select
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import SQLModel, col, delete, func, select, update

from app.db.models import CardVote, DotVote, LevelVote, Note, NoteGroup, table_of
from app.domain.definitions import PhaseKind, UnknownIdError
from app.realtime import messages as m
from app.services.live.context import Ctx, Rejected
from app.services.live.results import current_round, voters_in_round, voters_on_card
from app.services.workshops import clean_text

BOARD_PHASES = (PhaseKind.REFLECT,)
FACILITATOR_BOARD_PHASES = (PhaseKind.REFLECT, PhaseKind.PRIORITISE)


def note_out(note: Note, dots: int = 0) -> dict[str, object]:
    return m.NoteOut(
        id=note.id,
        function_id=note.function_id,
        area=note.area,
        text=note.text,
        colour=note.colour,
        x=note.x,
        y=note.y,
        group_id=note.group_id,
        author_id=note.author_id or ("facilitator" if note.facilitator_id else None),
        dots=dots,
    ).model_dump()


# --- votes ------------------------------------------------------------------------------


_UpsertKey = tuple[str, type[SQLModel], tuple[str, ...], tuple[str, ...], tuple[str, ...]]
_UPSERTS: dict[_UpsertKey, Any] = {}


async def _upsert(
    ctx: Ctx, model: type[SQLModel], values: dict[str, Any], key: list[str], changes: list[str]
) -> None:
    """INSERT a row, or UPDATE `changes` of the one with the same `key` (one statement).

    Built once per dialect, model and columns: a live command runs it through a plan
    (`app.db.direct`), compiled once for the statement (SQLAlchemy's own statement
    cache has no key for `ON CONFLICT`).
    """
    name = ctx.session.get_bind().dialect.name
    cache_key = (name, model, tuple(values), tuple(key), tuple(changes))
    stmt: Any = _UPSERTS.get(cache_key)
    if stmt is None:
        dialect = postgresql if name == "postgresql" else sqlite
        upsert = dialect.insert(table_of(model)).values({c: bindparam(c) for c in values})
        stmt = _UPSERTS[cache_key] = upsert.on_conflict_do_update(
            index_elements=key, set_={column: upsert.excluded[column] for column in changes}
        )
    await ctx.session.exec(stmt, params=values)


async def vote_card(ctx: Ctx, cmd: m.VoteCard) -> None:
    pid = ctx.require_participant("sort cards")
    phase = ctx.require_phase(PhaseKind.SORT, what="sorting cards")
    try:
        function = ctx.definition.function_of_card(cmd.card_id)
    except UnknownIdError as exc:
        raise Rejected("unknown_card", f"there is no card '{cmd.card_id}'") from exc
    if function.id != phase.function_id:
        raise Rejected("wrong_phase", f"that card belongs to {function.name}, not this phase")
    if f"cards:{function.id}" in ctx.workshop.revealed:
        raise Rejected("revealed", "the votes are revealed; ask the facilitator to hide them")
    # One vote per person per card: the unique key turns a second vote into a change.
    await _upsert(
        ctx,
        CardVote,
        {
            "workshop_id": ctx.workshop.id,
            "participant_id": pid,
            "function_id": function.id,
            "card_id": cmd.card_id,
            "choice": cmd.choice,
            "updated_at": ctx.now,
        },
        key=["workshop_id", "participant_id", "card_id"],
        changes=["choice", "updated_at"],
    )
    voters = await voters_on_card(ctx.session, ctx.workshop.id, cmd.card_id)
    ctx.result = {"card_id": cmd.card_id, "choice": cmd.choice}
    await ctx.emit(
        "card.voted",
        {
            "function_id": function.id,
            "card_id": cmd.card_id,
            "participant_id": pid,
            "voters": voters,
            "choice": cmd.choice,
        },
    )


async def vote_level(ctx: Ctx, cmd: m.VoteLevel) -> None:
    pid = ctx.require_participant("vote on the level")
    phase = ctx.require_phase(PhaseKind.LEVEL_VOTE, what="voting on the level")
    assert phase.function_id is not None
    if cmd.level >= len(ctx.definition.scale):
        names = ", ".join(f"{i} = {n}" for i, n in enumerate(ctx.definition.level_names))
        raise Rejected("unknown_level", f"level must be one of {names}")
    rnd = await current_round(ctx.session, ctx.workshop.id, phase.function_id)
    if rnd.revealed_at is not None:
        raise Rejected("revealed", "this round is revealed; wait for the next round")
    await _upsert(
        ctx,
        LevelVote,
        {
            "workshop_id": ctx.workshop.id,
            "participant_id": pid,
            "function_id": phase.function_id,
            "round": rnd.number,
            "level": cmd.level,
            "updated_at": ctx.now,
        },
        key=["workshop_id", "participant_id", "function_id", "round"],
        changes=["level", "updated_at"],
    )
    voters = await voters_in_round(ctx.session, ctx.workshop.id, phase.function_id, rnd.number)
    ctx.result = {"function_id": phase.function_id, "round": rnd.number, "level": cmd.level}
    await ctx.emit(
        "level.voted",
        {
            "function_id": phase.function_id,
            "round": rnd.number,
            "participant_id": pid,
            "voters": voters,
            "level": cmd.level,
        },
    )


# --- notes ------------------------------------------------------------------------------


def _board_phase(ctx: Ctx, what: str) -> str:
    kinds = FACILITATOR_BOARD_PHASES if ctx.actor.is_facilitator else BOARD_PHASES
    phase = ctx.require_phase(*kinds, what=what)
    assert phase.function_id is not None
    return phase.function_id


def _check_area(ctx: Ctx, area: str) -> None:
    areas = [a.id for a in ctx.definition.board.areas]
    if area not in areas:
        raise Rejected(
            "unknown_area", f"'{area}' is not an area of this board ({', '.join(areas)})"
        )


def _check_colour(ctx: Ctx, colour: str) -> None:
    colours = ctx.definition.board.colours
    if colour not in colours:
        raise Rejected("unknown_colour", f"'{colour}' is not a colour here ({', '.join(colours)})")


def _text(value: str, field: str, limit: int) -> str:
    from app.services.errors import Invalid

    try:
        return clean_text(value, field=field, max_length=limit)
    except Invalid as exc:
        raise Rejected("invalid", exc.message) from exc


async def _note(ctx: Ctx, note_id: str, *, own: bool, what: str) -> Note:
    note = await ctx.session.get(Note, note_id)
    if note is None or note.workshop_id != ctx.workshop.id:
        raise Rejected("unknown_note", "there is no such note (it may have been deleted)")
    if own and not ctx.actor.is_facilitator and note.author_id != ctx.actor.participant_id:
        raise Rejected("not_yours", f"only its author or the facilitator can {what} a note")
    return note


# Statements of the frequent commands, built once (values are bound per call) and run
# as Core statements: no per-call construction, no ORM unit of work for one row.
_NOTE = table_of(Note)
_DOT = table_of(DotVote)
_NOTES_IN_AREA = (
    select(func.count())
    .select_from(_NOTE)
    .where(
        _NOTE.c.workshop_id == bindparam("workshop_id"),
        _NOTE.c.function_id == bindparam("function_id"),
        _NOTE.c.area == bindparam("area"),
    )
)
_INSERT_NOTE = insert(_NOTE)
_NOTE_TO_MOVE = select(_NOTE.c.workshop_id, _NOTE.c.area).where(_NOTE.c.id == bindparam("note_id"))
_MOVE_NOTE = (
    update(_NOTE)
    .where(_NOTE.c.id == bindparam("note_id"))
    .values(x=bindparam("new_x"), y=bindparam("new_y"), updated_at=bindparam("now"))
)
# To another area: a group lives in one area, so the note leaves its group.
_MOVE_NOTE_TO_AREA = _MOVE_NOTE.values(area=bindparam("new_area"), group_id=None)


def spot(n: int) -> tuple[float, float]:
    """The place of an area's note number `n` (from 0) on its grid of free spots."""
    # Two columns of six rows (a note is about a fifth of the canvas high); each
    # further dozen is offset a little, so a stacked note still shows its edge.
    cell, layer = n % 12, (n // 12) % 4
    col, row = cell % 2, cell // 2
    return round(0.02 + col * 0.48 + layer * 0.03, 4), round(0.01 + row * 0.16 + layer * 0.02, 4)


# The spots cycle after 12 cells x 4 layers (PostgreSQL's `live_note_create` takes them
# as this table: `app.services.live.pg_lane`).
SPOTS = tuple(spot(n) for n in range(48))


async def _free_spot(ctx: Ctx, function_id: str, area: str) -> tuple[float, float]:
    """A grid cell for a new note, so notes written at once don't land on each other."""
    n = (
        await ctx.session.exec(
            _NOTES_IN_AREA,
            params={"workshop_id": ctx.workshop.id, "function_id": function_id, "area": area},
        )
    ).one()
    return SPOTS[int(n) % len(SPOTS)]


async def create_note(ctx: Ctx, cmd: m.CreateNote) -> None:
    function_id = _board_phase(ctx, "writing notes")
    _check_area(ctx, cmd.area)
    colour = cmd.colour or ctx.definition.board.colours[0]
    _check_colour(ctx, colour)
    note = Note(
        workshop_id=ctx.workshop.id,
        function_id=function_id,
        area=cmd.area,
        text=_text(cmd.text, "note text", 500),
        colour=colour,
        x=cmd.x if cmd.x is not None else 0.0,
        y=cmd.y if cmd.y is not None else 0.0,
        author_id=ctx.actor.participant_id,
        facilitator_id=ctx.actor.facilitator_id,
    )
    if cmd.x is None or cmd.y is None:
        note.x, note.y = await _free_spot(ctx, function_id, cmd.area)
    await ctx.session.exec(
        _INSERT_NOTE, params={column.name: getattr(note, column.name) for column in _NOTE.c}
    )
    ctx.result = {"note_id": note.id}
    await ctx.emit("note.created", {"note": note_out(note)})


async def edit_note(ctx: Ctx, cmd: m.EditNote) -> None:
    _board_phase(ctx, "editing notes")
    note = await _note(ctx, cmd.note_id, own=True, what="edit")
    note.text = _text(cmd.text, "note text", 500)
    note.updated_at = ctx.now
    ctx.session.add(note)
    await ctx.emit("note.edited", {"note_id": note.id, "text": note.text})


async def _area_of_note(ctx: Ctx, note_id: str) -> str:
    """The area of a note of this workshop that anyone may move (one plan)."""
    found = (await ctx.session.exec(_NOTE_TO_MOVE, params={"note_id": note_id})).first()
    if found is None or found[0] != ctx.workshop.id:
        raise Rejected("unknown_note", "there is no such note (it may have been deleted)")
    area: str = found[1]
    return area


async def move_note(ctx: Ctx, cmd: m.MoveNote) -> None:
    _board_phase(ctx, "moving notes")
    area = await _area_of_note(ctx, cmd.note_id)
    params: dict[str, Any] = {
        "note_id": cmd.note_id,
        "new_x": cmd.x,
        "new_y": cmd.y,
        "now": ctx.now,
    }
    stmt = _MOVE_NOTE
    if cmd.area is not None and cmd.area != area:
        _check_area(ctx, cmd.area)
        area = params["new_area"] = cmd.area
        stmt = _MOVE_NOTE_TO_AREA
    await ctx.session.exec(stmt, params=params)
    payload = {"note_id": cmd.note_id, "x": cmd.x, "y": cmd.y, "area": area}
    await ctx.emit("note.moved", payload)


async def drag_check(ctx: Ctx, cmd: m.DragNote) -> None:
    """Checks for a drag preview; nothing is written and no event is stored."""
    _board_phase(ctx, "moving notes")
    await _area_of_note(ctx, cmd.note_id)


async def recolour_note(ctx: Ctx, cmd: m.RecolourNote) -> None:
    _board_phase(ctx, "colouring notes")
    note = await _note(ctx, cmd.note_id, own=True, what="recolour")
    _check_colour(ctx, cmd.colour)
    note.colour = cmd.colour
    ctx.session.add(note)
    await ctx.emit("note.recoloured", {"note_id": note.id, "colour": cmd.colour})


async def delete_note(ctx: Ctx, cmd: m.DeleteNote) -> None:
    _board_phase(ctx, "deleting notes")
    note = await _note(ctx, cmd.note_id, own=True, what="delete")
    await ctx.session.exec(delete(DotVote).where(col(DotVote.note_id) == note.id))
    await ctx.session.delete(note)
    await ctx.emit("note.deleted", {"note_id": cmd.note_id})


# --- groups -----------------------------------------------------------------------------


async def _group(ctx: Ctx, group_id: str) -> NoteGroup:
    group = await ctx.session.get(NoteGroup, group_id)
    if group is None or group.workshop_id != ctx.workshop.id:
        raise Rejected("unknown_group", "there is no such group (it may have been deleted)")
    return group


async def create_group(ctx: Ctx, cmd: m.CreateGroup) -> None:
    function_id = _board_phase(ctx, "grouping notes")
    _check_area(ctx, cmd.area)
    group = NoteGroup(
        workshop_id=ctx.workshop.id,
        function_id=function_id,
        area=cmd.area,
        label=_text(cmd.label, "group label", 120),
    )
    ctx.session.add(group)
    await ctx.session.flush()
    note_ids = list(dict.fromkeys(cmd.note_ids))
    for note_id in note_ids:
        note = await _note(ctx, note_id, own=False, what="group")
        if note.area != cmd.area or note.function_id != function_id:
            raise Rejected("wrong_area", "a group can only hold notes of its own area")
        note.group_id = group.id
        ctx.session.add(note)
    ctx.result = {"group_id": group.id}
    group_out = m.GroupOut(
        id=group.id, function_id=function_id, area=group.area, label=group.label
    ).model_dump()
    await ctx.emit("group.created", {"group": group_out, "note_ids": note_ids})


async def rename_group(ctx: Ctx, cmd: m.RenameGroup) -> None:
    _board_phase(ctx, "renaming groups")
    group = await _group(ctx, cmd.group_id)
    group.label = _text(cmd.label, "group label", 120)
    ctx.session.add(group)
    await ctx.emit("group.renamed", {"group_id": group.id, "label": group.label})


async def delete_group(ctx: Ctx, cmd: m.DeleteGroup) -> None:
    _board_phase(ctx, "deleting groups")
    group = await _group(ctx, cmd.group_id)
    await ctx.session.exec(update(Note).where(col(Note.group_id) == group.id).values(group_id=None))
    await ctx.session.delete(group)
    await ctx.emit("group.deleted", {"group_id": cmd.group_id})


async def group_note(ctx: Ctx, cmd: m.GroupNote) -> None:
    _board_phase(ctx, "grouping notes")
    note = await _note(ctx, cmd.note_id, own=False, what="group")
    if cmd.group_id is not None:
        group = await _group(ctx, cmd.group_id)
        if group.area != note.area or group.function_id != note.function_id:
            raise Rejected("wrong_area", "a group can only hold notes of its own area")
    note.group_id = cmd.group_id
    ctx.session.add(note)
    await ctx.emit("note.grouped", {"note_id": note.id, "group_id": cmd.group_id})


# --- dot votes --------------------------------------------------------------------------


def dot_budget(ctx: Ctx) -> int:
    phase = ctx.phase
    if phase.key in ctx.workshop.phase_budgets:
        return int(ctx.workshop.phase_budgets[phase.key])
    return phase.dot_budget if phase.dot_budget is not None else ctx.workshop.dot_budget


def _dots_used() -> Any:
    """The participant's dots in this phase, as a scalar subquery."""
    return (
        select(func.count())
        .select_from(_DOT)
        .where(
            _DOT.c.workshop_id == bindparam("workshop_id"),
            _DOT.c.participant_id == bindparam("participant_id"),
            _DOT.c.phase_key == bindparam("phase_key"),
        )
        .scalar_subquery()
    )


def _dots_on(note_id: Any) -> Any:
    """The dots on a note, as a scalar subquery."""
    return select(func.count()).select_from(_DOT).where(_DOT.c.note_id == note_id).scalar_subquery()


# The note, the participant's dots in this phase and the note's dots: one query.
_NOTE_FOR_DOT: Any = sa_select(
    _NOTE.c.id,
    _NOTE.c.workshop_id,
    _NOTE.c.function_id,
    _NOTE.c.area,
    _dots_used(),
    _dots_on(_NOTE.c.id),
).where(_NOTE.c.id == bindparam("note_id"))
# One of the participant's dots on the note, with both counts.
_DOT_TO_REMOVE = (
    select(_DOT.c.id, _dots_used(), _dots_on(bindparam("note_id")))
    .where(
        _DOT.c.note_id == bindparam("note_id"),
        _DOT.c.participant_id == bindparam("participant_id"),
        _DOT.c.phase_key == bindparam("phase_key"),
    )
    .limit(1)
)
_INSERT_DOT = insert(_DOT)
_DELETE_DOT = delete(_DOT).where(_DOT.c.id == bindparam("dot_id"))


def _dot_params(ctx: Ctx, note_id: str, pid: str, phase_key: str) -> dict[str, Any]:
    """The values `_NOTE_FOR_DOT` and `_DOT_TO_REMOVE` are bound with."""
    return {
        "note_id": note_id,
        "workshop_id": ctx.workshop.id,
        "participant_id": pid,
        "phase_key": phase_key,
    }


async def add_dot(ctx: Ctx, cmd: m.AddDot) -> None:
    pid = ctx.require_participant("dot-vote")
    phase = ctx.require_phase(PhaseKind.PRIORITISE, what="dot voting")
    # The counts cannot change before the commit: the command holds the workshop row
    # (engine._context), and every dot is written by a command of this workshop.
    params = _dot_params(ctx, cmd.note_id, pid, phase.key)
    row = (await ctx.session.exec(_NOTE_FOR_DOT, params=params)).first()
    if row is None or row[1] != ctx.workshop.id:
        raise Rejected("unknown_note", "there is no such note (it may have been deleted)")
    note_id, function_id, area, used, dots = row[0], row[2], row[3], int(row[4]), int(row[5])
    if function_id != phase.function_id or (phase.area and area != phase.area):
        raise Rejected("wrong_area", "dots go on the notes of the area being prioritised")
    budget = dot_budget(ctx)
    if used >= budget:
        raise Rejected("no_dots_left", f"you have used all {budget} of your dots")
    await ctx.session.exec(
        _INSERT_DOT,
        params={
            "workshop_id": ctx.workshop.id,
            "note_id": note_id,
            "participant_id": pid,
            "phase_key": phase.key,
            "created_at": ctx.now,
        },
    )
    ctx.result = {"dots_left": budget - used - 1}
    await ctx.emit("dot.added", {"note_id": note_id, "participant_id": pid, "dots": dots + 1})


async def remove_dot(ctx: Ctx, cmd: m.RemoveDot) -> None:
    pid = ctx.require_participant("dot-vote")
    phase = ctx.require_phase(PhaseKind.PRIORITISE, what="dot voting")
    params = _dot_params(ctx, cmd.note_id, pid, phase.key)
    row = (await ctx.session.exec(_DOT_TO_REMOVE, params=params)).first()
    if row is None:
        raise Rejected("no_dot", "you have no dot on that note")
    dot_id, used, dots = row[0], int(row[1]), int(row[2])
    await ctx.session.exec(_DELETE_DOT, params={"dot_id": dot_id})
    ctx.result = {"dots_left": dot_budget(ctx) - (used - 1)}
    await ctx.emit("dot.removed", {"note_id": cmd.note_id, "participant_id": pid, "dots": dots - 1})
