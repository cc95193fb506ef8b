"""Gather a workshop's outcome from the database, once, into an :class:`Outcome`.

Every renderer (JSON, CSV, Markdown, PDF, the summary page) works from the outcome alone,
so they all show the same facts and are pure functions that tests can call directly.

Ordering is by content, never by database id, so that an imported copy lists everything
in the same order (see "Ordering" in docs/exports.md). Anonymity is applied here, at the
single point where data leaves the database: an anonymous workshop's participants carry
no name, organisation or timestamps into any export.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TypeVar

from sqlmodel import SQLModel, col, select
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
from app.domain.definitions import Definition, definition_from_snapshot, definition_to_snapshot
from app.exports import document as d
from app.services.scores import workshop_score

T = TypeVar("T", bound=SQLModel)
FAR = 10**6  # sorts ids the definition does not know after the known ones


@dataclass(frozen=True)
class Outcome:
    """The export document plus the parsed definition it was made with."""

    document: d.ExportDocument
    definition: Definition

    @classmethod
    def from_document(cls, document: d.ExportDocument) -> Outcome:
        return cls(document, definition_from_snapshot(document.definition))

    @cached_property
    def participant_labels(self) -> dict[str, str]:
        """How a person is shown: their name, or "Participant <n>" when anonymous."""
        return {
            p.id: p.display_name or f"Participant {p.id[1:]}" for p in self.document.participants
        }

    def author_label(self, author: str | None) -> str:
        if author is None:
            return ""
        if author == "facilitator":
            return "Facilitator"
        return self.participant_labels.get(author, author)


async def _rows(session: AsyncSession, model: type[T], workshop_id: str) -> list[T]:
    column = model.workshop_id  # type: ignore[attr-defined]
    return list((await session.exec(select(model).where(column == workshop_id))).all())


def _order(ids: tuple[str, ...]) -> dict[str, int]:
    return {ident: i for i, ident in enumerate(ids)}


async def gather(session: AsyncSession, workshop: Workshop) -> Outcome:
    """Read everything the workshop produced; one consistent read, no writes."""
    # The snapshot goes through the model and back so that an imported copy, which
    # stores the normalised form, exports the very same definition.
    definition = definition_from_snapshot(workshop.definition)
    snapshot = definition_to_snapshot(definition)
    fn_order = _order(definition.function_ids)
    card_order = _order(tuple(c.id for f in definition.functions for c in f.cards))
    anonymous = workshop.anonymous

    people = await _rows(session, Participant, workshop.id)
    # Anonymous: order by the random id so that the numbers do not reveal who came first.
    people.sort(key=(lambda p: p.id) if anonymous else (lambda p: (p.joined_at, p.id)))
    ref = {p.id: f"p{i}" for i, p in enumerate(people, 1)}
    participants = [
        d.ParticipantOut(
            id=ref[p.id],
            display_name=None if anonymous else p.display_name,
            organisation=None if anonymous else p.organisation,
            joined_at=None if anonymous else p.joined_at,
            removed=p.removed_at is not None,
            removed_at=None if anonymous else p.removed_at,
        )
        for p in people
    ]

    rounds = sorted(
        await _rows(session, LevelRound, workshop.id),
        key=lambda r: (fn_order.get(r.function_id, FAR), r.function_id, r.number),
    )
    card_votes = sorted(
        await _rows(session, CardVote, workshop.id),
        key=lambda v: (card_order.get(v.card_id, FAR), v.card_id, int(ref[v.participant_id][1:])),
    )
    level_votes = sorted(
        await _rows(session, LevelVote, workshop.id),
        key=lambda v: (
            fn_order.get(v.function_id, FAR),
            v.function_id,
            v.round,
            int(ref[v.participant_id][1:]),
        ),
    )
    groups = sorted(
        await _rows(session, NoteGroup, workshop.id), key=lambda g: (g.created_at, g.id)
    )
    group_ref = {g.id: f"g{i}" for i, g in enumerate(groups, 1)}
    notes = sorted(await _rows(session, Note, workshop.id), key=lambda n: (n.created_at, n.id))
    dots = (
        await session.exec(
            select(DotVote)
            .where(DotVote.workshop_id == workshop.id)
            .order_by(col(DotVote.created_at), col(DotVote.id))
        )
    ).all()
    dots_by_note: dict[str, list[d.DotOut]] = {}
    for dot in dots:
        dots_by_note.setdefault(dot.note_id, []).append(
            d.DotOut(
                participant=ref[dot.participant_id],
                phase_key=dot.phase_key,
                created_at=dot.created_at,
            )
        )
    card_decisions = sorted(
        await _rows(session, CardDecision, workshop.id),
        key=lambda c: (card_order.get(c.card_id, FAR), c.card_id),
    )
    level_decisions = sorted(
        await _rows(session, LevelDecision, workshop.id),
        key=lambda x: (fn_order.get(x.function_id, FAR), x.function_id),
    )
    score = await workshop_score(session, workshop)
    score.pop("workshop_id", None)  # a database id: not part of the document

    def author(note: Note) -> str | None:
        if note.author_id is not None:
            return ref.get(note.author_id)
        return "facilitator" if note.facilitator_id is not None else None

    document = d.ExportDocument(
        schema_version=d.SCHEMA_VERSION,
        kind=d.DOCUMENT_KIND,
        workshop=d.WorkshopInfo(
            title=workshop.title,
            definition_id=workshop.definition_id,
            state=workshop.state,
            anonymous=anonymous,
            dot_budget=workshop.dot_budget,
            phase_budgets=dict(sorted(workshop.phase_budgets.items())),
            current_phase=workshop.current_phase,
            revealed=list(workshop.revealed),
            created_at=workshop.created_at,
            started_at=workshop.started_at,
            ended_at=workshop.ended_at,
        ),
        definition=snapshot,
        participants=participants,
        level_rounds=[
            d.LevelRoundOut(
                function_id=r.function_id,
                round=r.number,
                opened_at=r.opened_at,
                revealed_at=r.revealed_at,
            )
            for r in rounds
        ],
        card_votes=[
            d.CardVoteOut(
                participant=ref[v.participant_id],
                function_id=v.function_id,
                card_id=v.card_id,
                choice=v.choice,
                updated_at=v.updated_at,
            )
            for v in card_votes
        ],
        level_votes=[
            d.LevelVoteOut(
                participant=ref[v.participant_id],
                function_id=v.function_id,
                round=v.round,
                level=v.level,
                updated_at=v.updated_at,
            )
            for v in level_votes
        ],
        note_groups=[
            d.NoteGroupOut(
                id=group_ref[g.id],
                function_id=g.function_id,
                area=g.area,
                label=g.label,
                x=g.x,
                y=g.y,
                created_at=g.created_at,
            )
            for g in groups
        ],
        notes=[
            d.NoteOut(
                id=f"n{i}",
                function_id=n.function_id,
                area=n.area,
                text=n.text,
                colour=n.colour,
                x=n.x,
                y=n.y,
                group=group_ref.get(n.group_id) if n.group_id else None,
                author=author(n),
                created_at=n.created_at,
                updated_at=n.updated_at,
                dots=dots_by_note.get(n.id, []),
            )
            for i, n in enumerate(notes, 1)
        ],
        card_decisions=[
            d.CardDecisionOut(
                function_id=c.function_id,
                card_id=c.card_id,
                practised=c.practised,
                note=c.note,
                decided_at=c.decided_at,
            )
            for c in card_decisions
        ],
        level_decisions=[
            d.LevelDecisionOut(
                function_id=x.function_id,
                level=x.level,
                note=x.note,
                signals=x.signals,
                recorded_at=x.recorded_at,
            )
            for x in level_decisions
        ],
        scores=d.Scores.model_validate(score),
    )
    return Outcome(document, definition)
