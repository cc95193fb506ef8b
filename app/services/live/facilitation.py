"""Facilitator commands: start, phases, timer, lock, reveal, rounds, decisions, end."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import select

from app.db.models import CardDecision, LevelDecision, LevelRound, Note, NoteGroup, Participant
from app.domain.definitions import PhaseKind, UnknownIdError
from app.realtime import messages as m
from app.services.live.context import Ctx, Rejected, phase_state, timer_state
from app.services.live.results import card_results, current_round, level_results

VOTE_PHASES = (PhaseKind.SORT, PhaseKind.DISCUSS, PhaseKind.LEVEL_VOTE)


def _require_running(ctx: Ctx) -> None:
    if ctx.workshop.state != "running":
        raise Rejected("not_running", "start the workshop first")


async def start(ctx: Ctx, cmd: m.StartWorkshop) -> None:
    if ctx.workshop.state != "lobby":
        raise Rejected("already_started", "the workshop has already started")
    w = ctx.workshop
    w.state = "running"
    w.started_at = ctx.now
    if ctx.phases[0].kind == PhaseKind.LOBBY and len(ctx.phases) > 1:
        w.current_phase = 1
    await _entered_phase(ctx)
    await ctx.emit(
        "workshop.started", {"phase": phase_state(ctx.phases, w.current_phase).model_dump()}
    )


async def _entered_phase(ctx: Ctx) -> None:
    w = ctx.workshop
    w.timer_ends_at = None
    w.timer_remaining_s = None
    w.spotlight = None
    phase = ctx.phase
    if phase.kind == PhaseKind.LEVEL_VOTE and phase.function_id:
        await current_round(ctx.session, w.id, phase.function_id)


async def _goto(ctx: Ctx, index: int) -> None:
    _require_running(ctx)
    if not 0 <= index < len(ctx.phases):
        raise Rejected(
            "no_such_phase", f"there is no phase {index}; phases are 0 to {len(ctx.phases) - 1}"
        )
    ctx.workshop.current_phase = index
    await _entered_phase(ctx)
    await ctx.emit(
        "phase.changed",
        {
            "phase": phase_state(ctx.phases, index).model_dump(),
            "timer": timer_state(ctx.workshop, ctx.now).model_dump(),
        },
    )


async def next_phase(ctx: Ctx, cmd: m.NextPhase) -> None:
    if ctx.workshop.current_phase + 1 >= len(ctx.phases):
        raise Rejected("no_such_phase", "this is already the last phase")
    await _goto(ctx, ctx.workshop.current_phase + 1)


async def previous_phase(ctx: Ctx, cmd: m.PreviousPhase) -> None:
    if ctx.workshop.current_phase == 0:
        raise Rejected("no_such_phase", "this is already the first phase")
    await _goto(ctx, ctx.workshop.current_phase - 1)


async def goto_phase(ctx: Ctx, cmd: m.GotoPhase) -> None:
    await _goto(ctx, cmd.index)


async def start_timer(ctx: Ctx, cmd: m.StartTimer) -> None:
    _require_running(ctx)
    seconds = cmd.seconds
    if seconds is None:
        if ctx.phase.minutes is None:
            raise Rejected("no_time_box", "this phase has no time-box: say how many seconds")
        seconds = ctx.phase.minutes * 60
    ctx.workshop.timer_ends_at = ctx.now + timedelta(seconds=seconds)
    ctx.workshop.timer_remaining_s = None
    await ctx.emit("timer.started", {"timer": timer_state(ctx.workshop, ctx.now).model_dump()})


async def pause_timer(ctx: Ctx, cmd: m.PauseTimer) -> None:
    w = ctx.workshop
    if w.timer_ends_at is None:
        raise Rejected("no_timer", "no timer is running")
    w.timer_remaining_s = timer_state(w, ctx.now).remaining_s
    w.timer_ends_at = None
    await ctx.emit("timer.paused", {"timer": timer_state(w, ctx.now).model_dump()})


async def extend_timer(ctx: Ctx, cmd: m.ExtendTimer) -> None:
    w = ctx.workshop
    if w.timer_ends_at is not None:
        w.timer_ends_at = max(w.timer_ends_at, ctx.now) + timedelta(seconds=cmd.seconds)
    elif w.timer_remaining_s is not None:
        w.timer_remaining_s += cmd.seconds
    else:
        raise Rejected("no_timer", "there is no timer to extend; start one")
    await ctx.emit("timer.extended", {"timer": timer_state(w, ctx.now).model_dump()})


async def lock_input(ctx: Ctx, cmd: m.LockInput) -> None:
    ctx.workshop.input_locked = True
    await ctx.emit("input.locked", {})


async def unlock_input(ctx: Ctx, cmd: m.UnlockInput) -> None:
    ctx.workshop.input_locked = False
    await ctx.emit("input.unlocked", {})


async def _reveal_scope(ctx: Ctx) -> tuple[str, str, int | None, str]:
    phase = ctx.require_phase(*VOTE_PHASES, what="revealing votes")
    assert phase.function_id is not None
    if phase.kind == PhaseKind.LEVEL_VOTE:
        rnd = await current_round(ctx.session, ctx.workshop.id, phase.function_id)
        return "level", phase.function_id, rnd.number, f"level:{phase.function_id}:{rnd.number}"
    return "cards", phase.function_id, None, f"cards:{phase.function_id}"


async def reveal_votes(ctx: Ctx, cmd: m.RevealVotes) -> None:
    scope, function_id, rnd, key = await _reveal_scope(ctx)
    w = ctx.workshop
    if key not in w.revealed:
        w.revealed = [*w.revealed, key]
    if scope == "level":
        assert rnd is not None
        round_row = await current_round(ctx.session, w.id, function_id)
        round_row.revealed_at = ctx.now
        ctx.session.add(round_row)
        results = await level_results(ctx.session, w.id, ctx.definition, function_id, rnd)
    else:
        results = await card_results(ctx.session, w.id, ctx.definition, function_id)
    await ctx.emit(
        "votes.revealed",
        {"scope": scope, "function_id": function_id, "round": rnd, "results": results},
    )


async def hide_votes(ctx: Ctx, cmd: m.HideVotes) -> None:
    scope, function_id, rnd, key = await _reveal_scope(ctx)
    w = ctx.workshop
    w.revealed = [k for k in w.revealed if k != key]
    if scope == "level":
        round_row = await current_round(ctx.session, w.id, function_id)
        round_row.revealed_at = None
        ctx.session.add(round_row)
    await ctx.emit("votes.hidden", {"scope": scope, "function_id": function_id, "round": rnd})


async def open_level_round(ctx: Ctx, cmd: m.OpenLevelRound) -> None:
    phase = ctx.require_phase(PhaseKind.LEVEL_VOTE, what="opening a new round")
    assert phase.function_id is not None
    rnd = await current_round(ctx.session, ctx.workshop.id, phase.function_id)
    if rnd.revealed_at is None:
        raise Rejected("round_not_revealed", "reveal this round before opening another")
    new = LevelRound(
        workshop_id=ctx.workshop.id, function_id=phase.function_id, number=rnd.number + 1
    )
    ctx.session.add(new)
    await ctx.emit("level_round.opened", {"function_id": phase.function_id, "round": new.number})


async def settle_card(ctx: Ctx, cmd: m.SettleCard) -> None:
    _require_running(ctx)
    try:
        function = ctx.definition.function_of_card(cmd.card_id)
    except UnknownIdError as exc:
        raise Rejected("unknown_card", f"there is no card '{cmd.card_id}'") from exc
    decision = (
        await ctx.session.exec(
            select(CardDecision).where(
                CardDecision.workshop_id == ctx.workshop.id, CardDecision.card_id == cmd.card_id
            )
        )
    ).first() or CardDecision(
        workshop_id=ctx.workshop.id, function_id=function.id, card_id=cmd.card_id, practised=True
    )
    decision.practised = cmd.practised
    decision.note = cmd.note
    decision.decided_at = ctx.now
    ctx.session.add(decision)
    await ctx.emit(
        "card.settled",
        {
            "function_id": function.id,
            "card_id": cmd.card_id,
            "practised": cmd.practised,
            "note": cmd.note,
        },
    )


async def record_level(ctx: Ctx, cmd: m.RecordLevel) -> None:
    from app.services.scores import workshop_score

    _require_running(ctx)
    if cmd.function_id not in ctx.definition.function_ids:
        raise Rejected("unknown_function", f"there is no core function '{cmd.function_id}'")
    if cmd.level >= len(ctx.definition.scale):
        names = ", ".join(f"{i} = {n}" for i, n in enumerate(ctx.definition.level_names))
        raise Rejected("unknown_level", f"level must be one of {names}")
    score = await workshop_score(ctx.session, ctx.workshop, ctx.definition)
    signals = next(f for f in score["functions"] if f["function_id"] == cmd.function_id)
    signals = {"card_level": signals["card_level"], "voted": signals["voted"]}
    decision = (
        await ctx.session.exec(
            select(LevelDecision).where(
                LevelDecision.workshop_id == ctx.workshop.id,
                LevelDecision.function_id == cmd.function_id,
            )
        )
    ).first() or LevelDecision(workshop_id=ctx.workshop.id, function_id=cmd.function_id, level=0)
    decision.level = cmd.level
    decision.note = cmd.note
    decision.signals = signals
    decision.recorded_at = ctx.now
    ctx.session.add(decision)
    await ctx.emit(
        "level.recorded",
        {
            "function_id": cmd.function_id,
            "level": cmd.level,
            "level_name": ctx.definition.level_names[cmd.level],
            "note": cmd.note,
            "signals": signals,
        },
    )


async def set_anonymity(ctx: Ctx, cmd: m.SetAnonymity) -> None:
    ctx.workshop.anonymous = cmd.anonymous
    await ctx.emit("anonymity.changed", {"anonymous": cmd.anonymous})


async def set_spotlight(ctx: Ctx, cmd: m.SetSpotlight) -> None:
    _require_running(ctx)
    target = cmd.target
    if target is not None:
        ok = True
        if target.kind == "card":
            ok = any(c.id == target.id for f in ctx.definition.functions for c in f.cards)
        elif target.kind == "area":
            ok = any(a.id == target.id for a in ctx.definition.board.areas)
        elif target.kind == "note":
            note = await ctx.session.get(Note, target.id)
            ok = note is not None and note.workshop_id == ctx.workshop.id
        else:
            group = await ctx.session.get(NoteGroup, target.id)
            ok = group is not None and group.workshop_id == ctx.workshop.id
        if not ok:
            raise Rejected("unknown_target", f"there is no {target.kind} '{target.id}'")
    ctx.workshop.spotlight = target.model_dump() if target else None
    await ctx.emit("spotlight.changed", {"target": ctx.workshop.spotlight})


async def set_dot_budget(ctx: Ctx, cmd: m.SetDotBudget) -> None:
    phase = ctx.require_phase(PhaseKind.PRIORITISE, what="setting the dot budget")
    ctx.workshop.phase_budgets = {**ctx.workshop.phase_budgets, phase.key: cmd.budget}
    await ctx.emit("dots.budget_set", {"phase_key": phase.key, "budget": cmd.budget})


async def remove_participant(ctx: Ctx, cmd: m.RemoveParticipant) -> None:
    participant = await ctx.session.get(Participant, cmd.participant_id)
    if (
        participant is None
        or participant.workshop_id != ctx.workshop.id
        or participant.removed_at is not None
    ):
        raise Rejected("unknown_participant", "there is no such participant in this workshop")
    participant.removed_at = ctx.now
    ctx.session.add(participant)
    await ctx.emit("participant.removed", {"participant_id": participant.id})


async def end_workshop(ctx: Ctx, cmd: m.EndWorkshop) -> None:
    ctx.workshop.state = "ended"
    ctx.workshop.ended_at = ctx.now
    ctx.workshop.timer_ends_at = None
    await ctx.emit("workshop.ended", {})
