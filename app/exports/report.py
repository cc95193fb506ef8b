"""The report view of an outcome, shaped like the DHS pilot findings.

Per core function: the recorded level, the card-derived level, the agreement, a summary,
the notes of each board area (*where we are now*, *where we hope to be*, *how we'll get
there*, most dot-voted first), what to celebrate (kept cards) and next steps (removed
cards). Markdown, PDF and the summary page all render this one structure; nothing here
escapes text, because each format escapes in its own way.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime

from app.exports.document import FunctionScore, NoteOut
from app.exports.outcome import Outcome

STATE_NAMES = {"lobby": "not started", "running": "in progress", "ended": "finished"}


@dataclass(frozen=True)
class NoteItem:
    text: str
    dots: int


@dataclass(frozen=True)
class NoteCluster:
    """A group of notes with its label, or a single loose note (label None)."""

    label: str | None
    dots: int
    notes: tuple[NoteItem, ...]


@dataclass(frozen=True)
class AreaReport:
    area_id: str
    name: str
    clusters: tuple[NoteCluster, ...]


@dataclass(frozen=True)
class CardItem:
    card_id: str
    title: str
    text: str
    level_name: str
    do: int
    voters: int
    settled: bool
    decision_note: str | None


@dataclass(frozen=True)
class FunctionReport:
    function_id: str
    name: str
    description: str
    recorded_level: int | None
    recorded_name: str | None
    card_level_name: str
    card_score: float
    agreement: float | None
    modal_share: float | None
    voters: int
    rounds: int
    low_agreement: bool
    note: str | None
    summary: str
    signals: str
    areas: tuple[AreaReport, ...]
    celebrate: tuple[CardItem, ...]
    next_steps: tuple[CardItem, ...]


@dataclass(frozen=True)
class Report:
    title: str
    definition_title: str
    state: str
    date: datetime
    anonymous: bool
    participant_count: int
    participant_names: tuple[str, ...]  # empty when the workshop is anonymous
    scale: tuple[str, ...]
    functions: tuple[FunctionReport, ...]
    krippendorff_alpha: float | None

    @property
    def date_text(self) -> str:
        return f"{self.date:%B} {self.date.day}, {self.date.year}"

    @property
    def state_text(self) -> str:
        return STATE_NAMES.get(self.state, self.state)


def agreement_text(agreement: float | None, low: bool) -> str:
    if agreement is None:
        return "no vote"
    return f"{agreement:.2f}" + (" (low)" if low else "")


def _signals(score: FunctionScore, card_name: str, n_levels: int, rounds: int) -> str:
    cards = (
        f"The practice cards point to {card_name} ({score.card_level.score:.2f} of {n_levels})."
        if score.card_level.n_cards_voted or any(score.card_level.practised.values())
        else "No practice cards were sorted."
    )
    voted = score.voted
    if voted.level_name is None or voted.agreement is None:
        vote = "No level vote was taken."
    else:
        low = ", low" if voted.low_agreement else ""
        people = "voter" if voted.n_voters == 1 else "voters"
        times = "round" if rounds == 1 else "rounds"
        vote = (
            f"The room voted {voted.level_name} with agreement {voted.agreement:.2f}{low} "
            f"({voted.n_voters} {people}, {rounds} {times})."
        )
    recorded = (
        f"Recorded at {score.recorded_level_name}."
        if score.recorded_level_name
        else "No level has been recorded yet."
    )
    return f"{recorded} {cards} {vote}"


def _clusters(outcome: Outcome, notes: list[NoteOut]) -> tuple[NoteCluster, ...]:
    """Loose notes and groups, most dots first; ties keep the order the notes were written."""
    labels = {g.id: g.label for g in outcome.document.note_groups}
    ranked = sorted(enumerate(notes), key=lambda pair: (-len(pair[1].dots), pair[0]))
    order: list[str] = []  # cluster keys by their best note's rank
    members: dict[str, list[NoteItem]] = {}
    for position, note in ranked:
        key = note.group if note.group in labels else f"loose-{position}"
        if key not in members:
            order.append(key)
            members[key] = []
        members[key].append(NoteItem(note.text, len(note.dots)))
    clusters = [
        NoteCluster(labels.get(key), sum(n.dots for n in members[key]), tuple(members[key]))
        for key in order
    ]
    # A group ranks by all its dots together; stable sort keeps first-written order on ties.
    clusters.sort(key=lambda c: -c.dots)
    return tuple(clusters)


def build(outcome: Outcome) -> Report:
    doc, definition = outcome.document, outcome.definition
    active = {p.id for p in doc.participants if not p.removed}
    scores = {f.function_id: f for f in doc.scores.functions}
    tallies: dict[str, Counter[str]] = {}
    for vote in doc.card_votes:
        if vote.participant in active:
            tallies.setdefault(vote.card_id, Counter())[vote.choice] += 1
    decisions = {c.card_id: c for c in doc.card_decisions}
    first_level = definition.scale[0].name
    functions: list[FunctionReport] = []
    for function in definition.functions:
        score = scores[function.id]
        card_name = score.card_level.level_name or f"not yet {first_level}"
        cards: list[tuple[int, CardItem, bool | None]] = []
        for index, card in enumerate(function.cards):
            tally = tallies.get(card.id, Counter())
            decision = decisions.get(card.id)
            item = CardItem(
                card_id=card.id,
                title=card.title,
                text=card.text,
                level_name=definition.level(card.level).name,
                do=tally["do"],
                voters=sum(tally.values()),
                settled=decision is not None,
                decision_note=decision.note if decision else None,
            )
            sort_key = definition.level_index(card.level) * 100 + index
            cards.append((sort_key, item, score.card_level.practised.get(card.id)))
        cards.sort(key=lambda c: c[0])
        areas = tuple(
            AreaReport(
                area.id,
                area.name,
                _clusters(
                    outcome,
                    [n for n in doc.notes if n.function_id == function.id and n.area == area.id],
                ),
            )
            for area in definition.board.areas
        )
        signals = _signals(score, card_name, len(definition.scale), len(score.rounds))
        functions.append(
            FunctionReport(
                function_id=function.id,
                name=function.name,
                description=function.description,
                recorded_level=score.recorded_level,
                recorded_name=score.recorded_level_name,
                card_level_name=card_name,
                card_score=score.card_level.score,
                agreement=score.voted.agreement,
                modal_share=score.voted.modal_share,
                voters=score.voted.n_voters,
                rounds=len(score.rounds),
                low_agreement=score.voted.low_agreement,
                note=score.recorded_note,
                summary=score.recorded_note or signals,
                signals=signals,
                areas=areas,
                celebrate=tuple(item for _, item, kept in cards if kept is True),
                next_steps=tuple(item for _, item, kept in cards if kept is not True),
            )
        )
    info = doc.workshop
    names = tuple(
        outcome.participant_labels[p.id]
        + (f" ({p.organisation})" if p.organisation and not info.anonymous else "")
        for p in doc.participants
        if not p.removed
    )
    return Report(
        title=info.title,
        definition_title=definition.title,
        state=info.state,
        date=info.ended_at or info.started_at or info.created_at,
        anonymous=info.anonymous,
        participant_count=len(active),
        participant_names=() if info.anonymous else names,
        scale=definition.level_names,
        functions=tuple(functions),
        krippendorff_alpha=doc.scores.reliability.krippendorff_alpha,
    )
