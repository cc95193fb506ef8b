"""Revealed results: card distributions (contested first) and the level-vote spread."""

from __future__ import annotations

from collections import Counter
from typing import Any

from sqlalchemy import bindparam
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.db.models import CardVote, LevelRound, LevelVote, Participant, table_of
from app.domain.definitions import Definition
from app.domain.scoring import CardTally, is_practised, voted_level

_CARD_VOTE = table_of(CardVote)
_LEVEL_VOTE = table_of(LevelVote)
_PARTICIPANT = table_of(Participant)

# Votes per card and choice, of participants still in the workshop: counted by the
# database (a reveal in a room of 25 that sorted 40 cards would otherwise load a
# thousand vote rows as objects). Core columns: a plan (app.db.direct), as the other
# statements of a reveal.
_CARD_COUNTS = (
    select(_CARD_VOTE.c.card_id, _CARD_VOTE.c.choice, func.count())
    .join(_PARTICIPANT, _PARTICIPANT.c.id == _CARD_VOTE.c.participant_id)
    .where(
        _CARD_VOTE.c.workshop_id == bindparam("workshop_id"),
        _CARD_VOTE.c.function_id == bindparam("function_id"),
        _PARTICIPANT.c.removed_at.is_(None),
    )
    .group_by(_CARD_VOTE.c.card_id, _CARD_VOTE.c.choice)
)


async def _active_ids(session: AsyncSession, workshop_id: str) -> set[str]:
    rows = await session.exec(
        select(Participant.id).where(
            Participant.workshop_id == workshop_id,
            col(Participant.removed_at).is_(None),
        )
    )
    return set(rows.all())


async def card_results(
    session: AsyncSession, workshop_id: str, definition: Definition, function_id: str
) -> dict[str, Any]:
    """Per card: counts, share, practised, and how contested (1 = evenly split)."""
    params = {"workshop_id": workshop_id, "function_id": function_id}
    counts: dict[str, Counter[str]] = {}
    for card_id, choice, n in (await session.exec(_CARD_COUNTS, params=params)).all():
        counts.setdefault(card_id, Counter())[choice] += n
    threshold = definition.scoring.practised_threshold
    cards: list[dict[str, Any]] = []
    for card in definition.function(function_id).cards:
        c = counts.get(card.id, Counter())
        tally = CardTally(
            card_id=card.id,
            level=definition.level_index(card.level),
            do=c["do"],
            dont=c["dont"],
            unsure=c["unsure"],
        )
        n = tally.n
        # Contested: how far the room is from one clear answer (0 = unanimous).
        top = max(c.values(), default=0)
        contested = 0.0 if n == 0 else round(1 - top / n, 4)
        cards.append(
            {
                "card_id": card.id,
                "do": tally.do,
                "dont": tally.dont,
                "unsure": tally.unsure,
                "voters": n,
                "practised": is_practised(tally, threshold),
                "contested": contested,
            }
        )
    cards.sort(key=lambda r: (-r["contested"], r["card_id"]))
    return {"cards": cards}


_CURRENT_ROUND = (
    select(LevelRound)
    .where(
        col(LevelRound.workshop_id) == bindparam("workshop_id"),
        col(LevelRound.function_id) == bindparam("function_id"),
    )
    .order_by(col(LevelRound.number).desc())
)


async def current_round(session: AsyncSession, workshop_id: str, function_id: str) -> LevelRound:
    params = {"workshop_id": workshop_id, "function_id": function_id}
    found = (await session.exec(_CURRENT_ROUND, params=params)).first()
    if found is None:
        found = LevelRound(workshop_id=workshop_id, function_id=function_id, number=1)
        session.add(found)
        await session.flush()
    return found


async def level_results(
    session: AsyncSession,
    workshop_id: str,
    definition: Definition,
    function_id: str,
    round_number: int,
) -> dict[str, Any]:
    active = await _active_ids(session, workshop_id)
    levels = (
        await session.exec(
            select(LevelVote.level, LevelVote.participant_id).where(
                LevelVote.workshop_id == workshop_id,
                LevelVote.function_id == function_id,
                LevelVote.round == round_number,
            )
        )
    ).all()
    votes = [level for level, pid in levels if pid in active]
    rules = definition.scoring
    summary = voted_level(
        votes,
        len(definition.scale),
        min_agreement=rules.low_agreement,
        min_modal_share=rules.low_modal_share,
    )
    return summary.to_dict(definition.level_names)


# Voter counts for the vote commands: built once, values bound per call.
_VOTERS_ON_CARD = (
    select(func.count())
    .select_from(_CARD_VOTE)
    .join(_PARTICIPANT, _PARTICIPANT.c.id == _CARD_VOTE.c.participant_id)
    .where(
        _CARD_VOTE.c.workshop_id == bindparam("workshop_id"),
        _CARD_VOTE.c.card_id == bindparam("card_id"),
        _PARTICIPANT.c.removed_at.is_(None),
    )
)
_VOTERS_IN_ROUND = (
    select(func.count())
    .select_from(_LEVEL_VOTE)
    .join(_PARTICIPANT, _PARTICIPANT.c.id == _LEVEL_VOTE.c.participant_id)
    .where(
        _LEVEL_VOTE.c.workshop_id == bindparam("workshop_id"),
        _LEVEL_VOTE.c.function_id == bindparam("function_id"),
        _LEVEL_VOTE.c.round == bindparam("round"),
        _PARTICIPANT.c.removed_at.is_(None),
    )
)


async def voters_on_card(session: AsyncSession, workshop_id: str, card_id: str) -> int:
    params = {"workshop_id": workshop_id, "card_id": card_id}
    return int((await session.exec(_VOTERS_ON_CARD, params=params)).one())


async def voters_in_round(
    session: AsyncSession, workshop_id: str, function_id: str, round_number: int
) -> int:
    params = {"workshop_id": workshop_id, "function_id": function_id, "round": round_number}
    return int((await session.exec(_VOTERS_IN_ROUND, params=params)).one())
