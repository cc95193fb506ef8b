"""The whole current state of a workshop for one audience, and the log since a seq."""

from __future__ import annotations

from collections import Counter
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
from app.services.live.context import phase_state, timer_state, utcnow
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


async def build_snapshot(
    session: AsyncSession,
    workshop: Workshop,
    definition: Definition,
    phases: tuple[Phase, ...],
    audience: Audience,
    participant_id: str | None,
    presence: dict[str, str],
) -> dict[str, Any]:
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

    me: dict[str, Any] | None = None
    if participant_id is not None:
        me = {
            "participant_id": participant_id,
            "card_votes": {
                v.card_id: v.choice for v in card_votes if v.participant_id == participant_id
            },
            "level_votes": {
                f"{lv.function_id}:{lv.round}": lv.level
                for lv in level_votes
                if lv.participant_id == participant_id
            },
            "note_ids": sorted(n.id for n in notes if n.author_id == participant_id),
            "dots": dict(Counter(d.note_id for d in dots if d.participant_id == participant_id)),
        }
    notes_out = []
    for n in notes:
        item = note_out(n, dots_per_note.get(n.id, 0))
        if anonymous:
            item["author_id"] = None
        notes_out.append(item)
    now = utcnow()
    return {
        "type": "snapshot",
        "seq": workshop.seq,
        "audience": audience,
        "workshop": {
            "id": wid,
            "title": workshop.title,
            "state": workshop.state,
            "anonymous": anonymous,
            "input_locked": workshop.input_locked,
            "phase": phase_state(phases, workshop.current_phase).model_dump(),
            "phases": [phase_state(phases, i).model_dump() for i in range(len(phases))],
            "timer": timer_state(workshop, now).model_dump(),
            "spotlight": workshop.spotlight,
            "revealed": workshop.revealed,
            "phase_budgets": workshop.phase_budgets,
            "dot_budget": workshop.dot_budget,
        },
        "definition": {
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
        "participants": [
            {
                "id": p.id,
                "display_name": None if hide_who else p.display_name,
                "organisation": None if hide_who else p.organisation,
                "presence": presence.get(p.id, "offline"),
            }
            for p in participants
        ],
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
                d.card_id: {"practised": d.practised, "note": d.note, "function_id": d.function_id}
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
        "me": me,
    }
