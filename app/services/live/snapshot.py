"""The whole current state of a workshop for one audience, and the log since a seq."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.db.models import (
    CardDecision,
    CardVote,
    DotVote,
    Event,
    LevelDecision,
    LevelRound,
    LevelVote,
    Note,
    NoteGroup,
    Participant,
    Workshop,
)
from app.domain.definitions import Definition, Phase
from app.realtime.messages import Audience
from app.realtime.views import actor_from_log
from app.services.live.context import phase_state, timer_of, utcnow
from app.services.live.participation import note_out
from app.services.live.results import card_results, level_results


async def events_since(
    session: AsyncSession, workshop_id: str, last_seq: int, limit: int
) -> list[dict[str, Any]] | None:
    """Stored events after `last_seq` in order, or None when more than `limit`."""
    rows = (
        await session.exec(
            select(Event)
            .where(Event.workshop_id == workshop_id, Event.seq > last_seq)
            .order_by(col(Event.seq))
            .limit(limit + 1)
        )
    ).all()
    if len(rows) > limit:
        return None
    return [
        {
            "type": e.type,
            "seq": e.seq,
            "actor": actor_from_log(e.actor),
            "at": e.created_at.isoformat(),
            "cid": None,
            "ts": None,
            **e.payload,
        }
        for e in rows
    ]


def dumps(value: Any) -> str:
    """Compact JSON as the socket sends it."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


@dataclass(slots=True)
class _State:
    """A workshop's state at one seq for one audience, in the snapshot's key order,
    less what depends on the moment (the timer), the room (presence) or the recipient
    (`me`)."""

    head: dict[str, Any]  # type, seq, audience
    before_timer: dict[str, Any]  # the workshop's keys before "timer"
    after_timer: dict[str, Any]  # and after it
    timer_ends_at: datetime | None
    timer_remaining_s: int | None
    definition: dict[str, Any]
    participants: list[dict[str, Any]]  # without "presence"
    rest: dict[str, Any]  # progress, results, notes, groups, decisions
    card_votes: Sequence[CardVote]
    level_votes: Sequence[LevelVote]
    notes: Sequence[Note]
    dots: Sequence[DotVote]


async def _read(
    session: AsyncSession,
    workshop: Workshop,
    definition: Definition,
    phases: tuple[Phase, ...],
    audience: Audience,
) -> _State:
    wid = workshop.id
    anonymous = workshop.anonymous
    hide_who = anonymous and audience != "facilitator"
    participants = (
        await session.exec(
            select(Participant).where(
                Participant.workshop_id == wid, col(Participant.removed_at).is_(None)
            )
        )
    ).all()
    card_votes = (await session.exec(select(CardVote).where(CardVote.workshop_id == wid))).all()
    level_votes = (await session.exec(select(LevelVote).where(LevelVote.workshop_id == wid))).all()
    rounds = (await session.exec(select(LevelRound).where(LevelRound.workshop_id == wid))).all()
    notes = (await session.exec(select(Note).where(Note.workshop_id == wid))).all()
    groups = (await session.exec(select(NoteGroup).where(NoteGroup.workshop_id == wid))).all()
    dots = (await session.exec(select(DotVote).where(DotVote.workshop_id == wid))).all()
    settled = (
        await session.exec(select(CardDecision).where(CardDecision.workshop_id == wid))
    ).all()
    recorded = (
        await session.exec(select(LevelDecision).where(LevelDecision.workshop_id == wid))
    ).all()
    active = {p.id for p in participants}

    dots_per_note = Counter(d.note_id for d in dots)
    latest_round: dict[str, int] = {}
    for r in rounds:
        latest_round[r.function_id] = max(latest_round.get(r.function_id, 0), r.number)
    card_voters: dict[str, list[str]] = {}
    for v in card_votes:
        if v.participant_id in active:
            card_voters.setdefault(v.card_id, []).append(v.participant_id)
    level_voters: dict[str, list[str]] = {}
    for lv in level_votes:
        if lv.participant_id in active and lv.round == latest_round.get(lv.function_id):
            level_voters.setdefault(lv.function_id, []).append(lv.participant_id)

    revealed: dict[str, Any] = {}
    for key in workshop.revealed:
        scope, _, rest = key.partition(":")
        if scope == "cards":
            revealed[key] = await card_results(session, wid, definition, rest)
        else:
            function_id, _, number = rest.partition(":")
            revealed[key] = await level_results(session, wid, definition, function_id, int(number))

    def who(ids: list[str]) -> list[str] | None:
        return None if hide_who else sorted(ids)

    notes_out = []
    for n in notes:
        item = note_out(n, dots_per_note.get(n.id, 0))
        if anonymous:
            item["author_id"] = None
        notes_out.append(item)
    return _State(
        head={"type": "snapshot", "seq": workshop.seq, "audience": audience},
        before_timer={
            "id": wid,
            "title": workshop.title,
            "state": workshop.state,
            "anonymous": anonymous,
            "input_locked": workshop.input_locked,
            "phase": phase_state(phases, workshop.current_phase).model_dump(),
            "phases": [phase_state(phases, i).model_dump() for i in range(len(phases))],
        },
        after_timer={
            "spotlight": workshop.spotlight,
            "revealed": workshop.revealed,
            "phase_budgets": workshop.phase_budgets,
            "dot_budget": workshop.dot_budget,
        },
        timer_ends_at=workshop.timer_ends_at,
        timer_remaining_s=workshop.timer_remaining_s,
        definition={
            "id": definition.id,
            "title": definition.title,
            "scale": [{"id": lv.id, "name": lv.name} for lv in definition.scale],
            "functions": [
                {
                    "id": f.id,
                    "name": f.name,
                    "cards": [
                        {"id": c.id, "level": c.level, "title": c.title, "text": c.text}
                        for c in f.cards
                    ],
                }
                for f in definition.functions
            ],
            "board": {
                "areas": [{"id": a.id, "name": a.name} for a in definition.board.areas],
                "colours": list(definition.board.colours),
            },
        },
        participants=[
            {
                "id": p.id,
                "display_name": None if hide_who else p.display_name,
                "organisation": None if hide_who else p.organisation,
            }
            for p in participants
        ],
        rest={
            "progress": {
                "cards": {
                    cid: {"voters": len(ids), "who": who(ids)} for cid, ids in card_voters.items()
                },
                "levels": {
                    fid: {"round": latest_round[fid], "voters": len(ids), "who": who(ids)}
                    for fid, ids in level_voters.items()
                },
                "rounds": latest_round,
            },
            "results": revealed,
            "notes": notes_out,
            "groups": [
                {"id": g.id, "function_id": g.function_id, "area": g.area, "label": g.label}
                for g in groups
            ],
            "decisions": {
                "cards": {
                    d.card_id: {
                        "practised": d.practised,
                        "note": d.note,
                        "function_id": d.function_id,
                    }
                    for d in settled
                },
                "levels": {
                    d.function_id: {
                        "level": d.level,
                        "level_name": definition.level_names[d.level],
                        "note": d.note,
                    }
                    for d in recorded
                },
            },
        },
        card_votes=card_votes,
        level_votes=level_votes,
        notes=notes,
        dots=dots,
    )


def _me(state: _State, participant_id: str) -> dict[str, Any]:
    return {
        "participant_id": participant_id,
        "card_votes": {
            v.card_id: v.choice for v in state.card_votes if v.participant_id == participant_id
        },
        "level_votes": {
            f"{lv.function_id}:{lv.round}": lv.level
            for lv in state.level_votes
            if lv.participant_id == participant_id
        },
        "note_ids": sorted(n.id for n in state.notes if n.author_id == participant_id),
        "dots": dict(Counter(d.note_id for d in state.dots if d.participant_id == participant_id)),
    }


def _me_all(state: _State) -> dict[str, dict[str, Any]]:
    """`_me` for everyone with a vote, note or dot, in one pass over the rows."""
    out: dict[str, dict[str, Any]] = {}

    def of(pid: str) -> dict[str, Any]:
        me = out.get(pid)
        if me is None:
            me = out[pid] = _empty_me(pid)
        return me

    for v in state.card_votes:
        of(v.participant_id)["card_votes"][v.card_id] = v.choice
    for lv in state.level_votes:
        of(lv.participant_id)["level_votes"][f"{lv.function_id}:{lv.round}"] = lv.level
    for n in state.notes:
        if n.author_id is not None:
            of(n.author_id)["note_ids"].append(n.id)
    for d in state.dots:
        dots = of(d.participant_id)["dots"]
        dots[d.note_id] = dots.get(d.note_id, 0) + 1
    for me in out.values():
        me["note_ids"].sort()
    return out


def _empty_me(participant_id: str) -> dict[str, Any]:
    return {
        "participant_id": participant_id,
        "card_votes": {},
        "level_votes": {},
        "note_ids": [],
        "dots": {},
    }


async def build_snapshot(
    session: AsyncSession,
    workshop: Workshop,
    definition: Definition,
    phases: tuple[Phase, ...],
    audience: Audience,
    participant_id: str | None,
    presence: dict[str, str],
) -> dict[str, Any]:
    state = await _read(session, workshop, definition, phases, audience)
    timer = timer_of(state.timer_ends_at, state.timer_remaining_s, utcnow())
    return {
        **state.head,
        "workshop": {**state.before_timer, "timer": timer.model_dump(), **state.after_timer},
        "definition": state.definition,
        "participants": [
            {**p, "presence": presence.get(p["id"], "offline")} for p in state.participants
        ],
        **state.rest,
        "me": None if participant_id is None else _me(state, participant_id),
    }


@dataclass(slots=True, eq=False)
class SharedSnapshot:
    """One audience's snapshot at one seq as JSON text, built once for every client
    that joins at that seq: `text` splices in the timer (as of now), presence (as the
    room knows it) and the recipient's `me`. The text equals `build_snapshot`'s
    serialised with `dumps`."""

    seq: int
    audience: Audience
    head: str  # up to the workshop's "timer" value
    middle: str  # after it, up to the participants' list
    people: list[tuple[str, str]]  # (participant id, its entry up to the presence value)
    tail: str  # after the participants, up to the "me" value
    me: dict[str, str]  # participant id -> its `me` as JSON text (those with anything)
    timer_ends_at: datetime | None
    timer_remaining_s: int | None

    def text(
        self, participant_id: str | None, presence: dict[str, str], now: datetime | None = None
    ) -> str:
        timer = timer_of(self.timer_ends_at, self.timer_remaining_s, now or utcnow())
        if participant_id is None:
            me = "null"
        else:
            me = self.me.get(participant_id) or dumps(_empty_me(participant_id))
        people = ",".join(
            f"{entry}{dumps(presence.get(pid, 'offline'))}}}" for pid, entry in self.people
        )
        return "".join(
            (self.head, dumps(timer.model_dump()), self.middle, people, self.tail, me, "}")
        )


def _open(value: dict[str, Any]) -> str:
    """A dict's JSON without its closing brace (more keys follow)."""
    return dumps(value)[:-1]


async def build_shared(
    session: AsyncSession,
    workshop: Workshop,
    definition: Definition,
    phases: tuple[Phase, ...],
    audience: Audience,
) -> SharedSnapshot:
    state = await _read(session, workshop, definition, phases, audience)
    head = _open(state.head) + ',"workshop":' + _open(state.before_timer) + ',"timer":'
    middle = (
        ("," + dumps(state.after_timer)[1:] if state.after_timer else "}")
        + ',"definition":'
        + dumps(state.definition)
        + ',"participants":['
    )
    tail = "]," + dumps(state.rest)[1:-1] + ',"me":'
    me: dict[str, str] = {}
    if audience == "participant":
        me = {pid: dumps(value) for pid, value in _me_all(state).items()}
    return SharedSnapshot(
        seq=workshop.seq,
        audience=audience,
        head=head,
        middle=middle,
        people=[(p["id"], _open(p) + ',"presence":') for p in state.participants],
        tail=tail,
        me=me,
        timer_ends_at=state.timer_ends_at,
        timer_remaining_s=state.timer_remaining_s,
    )
