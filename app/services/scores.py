"""Read a workshop's votes and decisions and score every core function."""

from __future__ import annotations

from collections import defaultdict
from typing import Any, cast

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.db.models import CardDecision, CardVote, LevelDecision, LevelVote, Participant, Workshop
from app.domain.definitions import Definition, definition_from_snapshot
from app.domain.scoring import (
    CardChoice,
    CardTally,
    card_vote_reliability,
    score_function,
    workshop_score_dict,
)


async def workshop_score(
    session: AsyncSession, workshop: Workshop, definition: Definition | None = None
) -> dict[str, Any]:
    """`definition`: the workshop's, parsed already (live commands have it cached)."""
    if definition is None:
        definition = definition_from_snapshot(workshop.definition)
    n_levels = len(definition.scale)
    rules = definition.scoring

    # Votes of removed participants do not count.
    removed = set(
        (
            await session.exec(
                select(Participant.id).where(
                    Participant.workshop_id == workshop.id,
                    Participant.removed_at != None,  # noqa: E711
                )
            )
        ).all()
    )
    card_votes = (
        await session.exec(select(CardVote).where(CardVote.workshop_id == workshop.id))
    ).all()
    choices_by_card: dict[str, list[CardChoice]] = defaultdict(list)
    for vote in card_votes:
        if vote.participant_id not in removed:
            choices_by_card[vote.card_id].append(cast(CardChoice, vote.choice))

    level_votes = (
        await session.exec(select(LevelVote).where(LevelVote.workshop_id == workshop.id))
    ).all()
    rounds: dict[str, dict[int, list[int]]] = defaultdict(lambda: defaultdict(list))
    for lv in level_votes:
        if lv.participant_id not in removed:
            rounds[lv.function_id][lv.round].append(lv.level)

    settled = {
        d.card_id: d.practised
        for d in (
            await session.exec(select(CardDecision).where(CardDecision.workshop_id == workshop.id))
        ).all()
    }
    recorded = {
        d.function_id: d
        for d in (
            await session.exec(
                select(LevelDecision).where(LevelDecision.workshop_id == workshop.id)
            )
        ).all()
    }

    functions = []
    for function in definition.functions:
        tallies = [
            CardTally.from_choices(
                card.id, definition.level_index(card.level), choices_by_card.get(card.id, [])
            )
            for card in function.cards
        ]
        by_round = rounds.get(function.id, {})
        decision = recorded.get(function.id)
        functions.append(
            score_function(
                function.id,
                tallies,
                [by_round[r] for r in sorted(by_round)],
                n_levels,
                threshold=rules.practised_threshold,
                min_agreement=rules.low_agreement,
                min_modal_share=rules.low_modal_share,
                settled={c.id: settled[c.id] for c in function.cards if c.id in settled},
                recorded_level=decision.level if decision else None,
                recorded_note=decision.note if decision else None,
            )
        )
    alpha = card_vote_reliability(choices_by_card)
    result = workshop_score_dict(
        workshop.id, [level.name for level in definition.scale], functions, alpha
    )
    names = {f.id: f.name for f in definition.functions}
    for item in result["functions"]:
        item["function_name"] = names[item["function_id"]]
    return result
