"""Import a JSON export as a new workshop owned by the importing facilitator.

The document is checked completely (:mod:`app.exports.checks`) before anything is
written; then every row goes in inside one transaction, so a failure leaves nothing
behind. The copy gets new database ids and a new join code (nobody from the original room
can reach it), keeps the workshop's state, dates and every recorded timestamp (so
comparisons by date still place it correctly), and logs one ``workshop.imported`` event.

New ids are drawn and then sorted before being handed out in document order: the export
orders ties by id, so the copy exports in exactly the same order (a byte-identical
round trip).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from app.db.models import (
    CardDecision,
    CardVote,
    DotVote,
    LevelDecision,
    LevelRound,
    LevelVote,
    Note,
    NoteGroup,
    Participant,
    Workshop,
)
from app.db.types import new_id
from app.domain.definitions import definition_to_snapshot
from app.exports.checks import check, parse
from app.exports.document import ExportDocument
from app.services.errors import Conflict
from app.services.events import append_event
from app.services.workshops import new_join_code

JOIN_CODE_ATTEMPTS = 8


def _new_ids(refs: list[str]) -> dict[str, str]:
    """Fresh database ids for ordinal refs, ascending in the refs' order (see above)."""
    return dict(zip(refs, sorted(new_id() for _ in refs), strict=True))


async def import_workshop(session: AsyncSession, data: Any, facilitator_id: str) -> Workshop:
    """Validate ``data`` (parsed JSON) and create the workshop; raises ImportRejected."""
    doc = parse(data)
    definition = check(doc)
    info = doc.workshop
    for _attempt in range(JOIN_CODE_ATTEMPTS):
        workshop = Workshop(
            facilitator_id=facilitator_id,
            title=info.title,
            definition_id=definition.id,
            definition=definition_to_snapshot(definition),
            join_code=new_join_code(),
            state=info.state,
            current_phase=info.current_phase,
            anonymous=info.anonymous,
            dot_budget=info.dot_budget,
            revealed=list(info.revealed),
            phase_budgets=dict(info.phase_budgets),
            created_at=info.created_at,
            started_at=info.started_at,
            ended_at=info.ended_at,
        )
        session.add(workshop)
        try:
            await session.flush()
        except IntegrityError:
            await session.rollback()  # join code collision: nothing else written yet
            continue
        try:
            await _write_rows(session, doc, workshop, facilitator_id)
            await append_event(
                session,
                workshop.id,
                "workshop.imported",
                {"title": info.title, "definition_id": definition.id},
                f"facilitator:{facilitator_id}",
            )
            await session.commit()
        except BaseException:
            await session.rollback()
            raise
        return workshop
    raise Conflict("could not allocate a join code; try again")


async def _write_rows(
    session: AsyncSession, doc: ExportDocument, workshop: Workshop, facilitator_id: str
) -> None:
    wid = workshop.id
    # When a time was withheld (anonymous export), the workshop's own dates stand in.
    fallback = doc.workshop.ended_at or doc.workshop.started_at or doc.workshop.created_at
    person = _new_ids([p.id for p in doc.participants])
    for p in doc.participants:
        name = p.display_name or f"Participant {p.id[1:]}"
        session.add(
            Participant(
                id=person[p.id],
                workshop_id=wid,
                display_name=name,
                name_key=name.casefold(),
                organisation=p.organisation,
                joined_at=p.joined_at or doc.workshop.created_at,
                removed_at=p.removed_at or (fallback if p.removed else None),
            )
        )
    group = _new_ids([g.id for g in doc.note_groups])
    for g in doc.note_groups:
        session.add(
            NoteGroup(
                id=group[g.id],
                workshop_id=wid,
                function_id=g.function_id,
                area=g.area,
                label=g.label,
                x=g.x,
                y=g.y,
                created_at=g.created_at,
            )
        )
    # Parents first: the foreign keys are checked row by row on PostgreSQL.
    await session.flush()
    for r in doc.level_rounds:
        session.add(
            LevelRound(
                workshop_id=wid,
                function_id=r.function_id,
                number=r.round,
                opened_at=r.opened_at,
                revealed_at=r.revealed_at,
            )
        )
    for v in doc.card_votes:
        session.add(
            CardVote(
                workshop_id=wid,
                participant_id=person[v.participant],
                function_id=v.function_id,
                card_id=v.card_id,
                choice=v.choice,
                updated_at=v.updated_at,
            )
        )
    for lv in doc.level_votes:
        session.add(
            LevelVote(
                workshop_id=wid,
                participant_id=person[lv.participant],
                function_id=lv.function_id,
                round=lv.round,
                level=lv.level,
                updated_at=lv.updated_at,
            )
        )
    note = _new_ids([n.id for n in doc.notes])
    for n in doc.notes:
        by_facilitator = n.author == "facilitator"
        session.add(
            Note(
                id=note[n.id],
                workshop_id=wid,
                function_id=n.function_id,
                area=n.area,
                text=n.text,
                colour=n.colour,
                x=n.x,
                y=n.y,
                group_id=group[n.group] if n.group else None,
                author_id=None if n.author is None or by_facilitator else person[n.author],
                facilitator_id=facilitator_id if by_facilitator else None,
                created_at=n.created_at,
                updated_at=n.updated_at,
            )
        )
    await session.flush()
    # In document order, so the new autoincrement ids keep the order of equal timestamps.
    for n in doc.notes:
        for dot in n.dots:
            session.add(
                DotVote(
                    workshop_id=wid,
                    note_id=note[n.id],
                    participant_id=person[dot.participant],
                    phase_key=dot.phase_key,
                    created_at=dot.created_at,
                )
            )
    for c in doc.card_decisions:
        session.add(
            CardDecision(
                workshop_id=wid,
                function_id=c.function_id,
                card_id=c.card_id,
                practised=c.practised,
                note=c.note,
                decided_at=c.decided_at,
            )
        )
    for x in doc.level_decisions:
        session.add(
            LevelDecision(
                workshop_id=wid,
                function_id=x.function_id,
                level=x.level,
                note=x.note,
                signals=dict(x.signals),
                recorded_at=x.recorded_at,
            )
        )
    await session.flush()
