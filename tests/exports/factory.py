"""A workshop with everything an export shows, written straight to the tables.

Timestamps are fixed, so the exports are byte-for-byte predictable (golden files).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

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
from app.domain.definitions import (
    Definition,
    PhaseKind,
    definition_to_snapshot,
    expand_phases,
    load_definition,
)
from app.services.workshops import new_join_code

HERE = Path(__file__).parent
PROJECT_DEFINITIONS = HERE.parents[1] / "workshop_templates"
T0 = datetime(2025, 3, 4, 14, 0, tzinfo=UTC)
PEOPLE = [
    ("Ana Díaz", "CBP"),
    ("Sam Lee", "TSA"),
    ("Kofi Mensah", None),
    ("Mei Chen", "USCIS"),
    ("Left Early", "FEMA"),  # removed: votes stay in the record, do not count
]
NOTES = {
    "now": ["We run a yearly survey", "Call volumes are tracked"],
    "hope": ["Results reach front-line staff monthly"],
    "how": ["Name an owner for each survey", "Share a dashboard", "Quarterly review meeting"],
}
HOSTILE = [
    '<script>alert("x")</script> & <b>bold</b>',
    '=HYPERLINK("http://evil.example","click me")',
    "+SUM(A1:A9)",
    "-2+3",
    "@cmd",
    "# not a heading | pipe *star* _under_ [link](javascript:alert(1)) `code` \\",
    "Ελληνικά · Кириллица · 中文 · 🙂",
    "1. not a list",
    "Looooong" + "o" * 492,
]


def export_definition() -> Definition:
    return load_definition(HERE / "export-test.yaml")


def _at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


async def seed_workshop(
    session: AsyncSession,
    facilitator_id: str,
    definition: Definition | None = None,
    *,
    title: str = "Passport Services CX",
    anonymous: bool = False,
    start: datetime = T0,
    state: str = "ended",
    level_shift: int = 0,
    extra_how: Sequence[str] = (),
) -> Workshop:
    """A finished workshop; ``level_shift`` moves the recorded levels (for comparisons)."""
    definition = definition or export_definition()
    offset = start - T0
    workshop = Workshop(
        facilitator_id=facilitator_id,
        title=title,
        definition_id=definition.id,
        definition=definition_to_snapshot(definition),
        join_code=new_join_code(),
        state=state,
        anonymous=anonymous,
        current_phase=len(expand_phases(definition)) - 1 if state == "ended" else 2,
        revealed=[f"cards:{f.id}" for f in definition.functions],
        created_at=_at(-60) + offset,
        started_at=_at(0) + offset,
        ended_at=_at(240) + offset if state == "ended" else None,
    )
    session.add(workshop)
    await session.flush()
    people = []
    for i, (name, org) in enumerate(PEOPLE):
        person = Participant(
            workshop_id=workshop.id,
            display_name=name,
            name_key=name.casefold(),
            organisation=org,
            joined_at=_at(-5 + i) + offset,
            removed_at=_at(30) + offset if name == "Left Early" else None,
        )
        session.add(person)
        people.append(person)
    await session.flush()
    top = len(definition.scale) - 1
    for fi, function in enumerate(definition.functions):
        t = fi * 40 + 1
        reached = fi % len(definition.scale)  # cards up to this level are practised
        for ci, card in enumerate(function.cards):
            level = definition.level_index(card.level)
            for pi, person in enumerate(people):
                if level <= reached:
                    choice = "unsure" if (pi == 3 and ci == 0) else "do"
                else:
                    choice = "do" if pi == 0 else ("unsure" if pi == 4 else "dont")
                session.add(
                    CardVote(
                        workshop_id=workshop.id,
                        participant_id=person.id,
                        function_id=function.id,
                        card_id=card.id,
                        choice=choice,
                        updated_at=_at(t + ci * 0.5 + pi * 0.01) + offset,
                    )
                )
        rounds = [[0, 1, 2, 1, 0], [1, 1, 1, 2, 1]] if fi == 0 else [[1, 1, 0, 1, 2]]
        for number, votes in enumerate(rounds, 1):
            session.add(
                LevelRound(
                    workshop_id=workshop.id,
                    function_id=function.id,
                    number=number,
                    opened_at=_at(t + 10 + number) + offset,
                    revealed_at=_at(t + 12 + number) + offset,
                )
            )
            for pi, (person, level) in enumerate(zip(people, votes, strict=True)):
                session.add(
                    LevelVote(
                        workshop_id=workshop.id,
                        participant_id=person.id,
                        function_id=function.id,
                        round=number,
                        level=min(level, top),
                        updated_at=_at(t + 11 + number + pi * 0.01) + offset,
                    )
                )
        if fi == 0:
            session.add(
                CardDecision(
                    workshop_id=workshop.id,
                    function_id=function.id,
                    card_id=function.cards[-1].id,
                    practised=False,
                    note="Only in one office so far",
                    decided_at=_at(t + 9) + offset,
                )
            )
        if fi < len(definition.functions) - 1 or len(definition.functions) == 1:
            session.add(
                LevelDecision(
                    workshop_id=workshop.id,
                    function_id=function.id,
                    level=min(max(1 + level_shift - fi % 2, 0), top),
                    note="Strong in pockets; not yet agency-wide" if fi == 0 else None,
                    signals={"voted": {"level": 1}, "card_level": {"level": reached}},
                    recorded_at=_at(t + 15) + offset,
                )
            )
        await _board(session, workshop, definition, function.id, t + 20, people, offset, extra_how)
    await session.commit()
    return workshop


async def _board(
    session: AsyncSession,
    workshop: Workshop,
    definition: Definition,
    function_id: str,
    t: float,
    people: list[Participant],
    offset: timedelta,
    extra_how: Sequence[str],
) -> None:
    # The default board is now/hope/how; other boards map onto their first and last areas.
    board = [a.id for a in definition.board.areas]
    areas = {"now": board[0], "hope": board[min(1, len(board) - 1)], "how": board[-1]}
    group = NoteGroup(
        workshop_id=workshop.id,
        function_id=function_id,
        area=areas["how"],
        label="Ownership",
        x=10.0,
        y=20.5,
        created_at=_at(t + 5) + offset,
    )
    session.add(group)
    await session.flush()
    n = 0
    how: list[Note] = []
    for area, texts in NOTES.items():
        for text in [*texts, *(extra_how if area == "how" else ())]:
            n += 1
            note = Note(
                workshop_id=workshop.id,
                function_id=function_id,
                area=areas[area],
                text=text,
                colour="yellow" if n % 2 else "blue",
                x=float(n * 12),
                y=float(n * 7) + 0.25,
                group_id=group.id if area == "how" and len(how) < 2 else None,
                author_id=None if n == 2 else people[n % 4].id,
                facilitator_id=workshop.facilitator_id if n == 2 else None,
                created_at=_at(t + n * 0.1) + offset,
                updated_at=_at(t + n * 0.1 + 1) + offset,
            )
            session.add(note)
            if area == "how":
                how.append(note)
    await session.flush()
    # Dots: the last "how" note gets the most, so sorting by dots changes the order.
    phases = [
        p.key
        for p in expand_phases(definition)
        if p.function_id == function_id and p.kind == PhaseKind.PRIORITISE
    ]
    if not phases:
        return  # this agenda has no dot voting
    plan = [(len(how) - 1, 0), (len(how) - 1, 1), (len(how) - 1, 2), (1, 0), (0, 3)]
    for i, (note_index, person_index) in enumerate(plan):
        session.add(
            DotVote(
                workshop_id=workshop.id,
                note_id=how[note_index].id,
                participant_id=people[person_index].id,
                phase_key=phases[0],
                created_at=_at(t + 8 + i * 0.1) + offset,
            )
        )
