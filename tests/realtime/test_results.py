"""Revealed card results are counted by the database, without removed participants."""

from __future__ import annotations

from datetime import UTC, datetime

from app.db.engine import make_engine, make_sessionmaker
from app.db.models import CardVote, Facilitator, Participant, Workshop
from app.domain.definitions import DEFAULT_DEFINITIONS_DIR, load_definition
from app.services.live.results import card_results
from app.services.workshops import new_join_code
from tests.exports.factory import seed_workshop

DEFINITION = load_definition(DEFAULT_DEFINITIONS_DIR / "dhs-cx-maturity.yaml")


async def test_card_results_count_the_room_without_removed_people(db_url: str) -> None:
    function = DEFINITION.functions[0]
    one, two, three = (card.id for card in function.cards[:3])
    # Ann, Bob and Cat vote; Dan votes too, then is removed: his votes no longer count.
    ballots = {
        "Ann": {one: "do", two: "do", three: "dont"},
        "Bob": {one: "do", two: "dont"},
        "Cat": {one: "do", two: "unsure"},
        "Dan": {one: "dont", two: "dont", three: "dont"},
    }
    engine = make_engine(db_url)
    try:
        async with make_sessionmaker(engine)() as session:
            fac = Facilitator(email="results@x.gov", display_name="F", password_hash="x")
            session.add(fac)
            await session.flush()
            # Another room on the same definition: everyone there voted on every card.
            await seed_workshop(session, fac.id, DEFINITION, title="Other room")
            workshop = Workshop(
                facilitator_id=fac.id,
                title="T",
                definition_id=DEFINITION.id,
                definition={},
                join_code=new_join_code(),
            )
            session.add(workshop)
            await session.flush()
            for name, votes in ballots.items():
                removed = datetime.now(UTC) if name == "Dan" else None
                person = Participant(
                    workshop_id=workshop.id, display_name=name, name_key=name, removed_at=removed
                )
                session.add(person)
                await session.flush()
                for card_id, choice in votes.items():
                    session.add(
                        CardVote(
                            workshop_id=workshop.id,
                            participant_id=person.id,
                            function_id=function.id,
                            card_id=card_id,
                            choice=choice,
                        )
                    )
            await session.commit()

            results = await card_results(session, workshop.id, DEFINITION, function.id)
    finally:
        await engine.dispose()

    by_card = {row["card_id"]: row for row in results["cards"]}
    assert {k: by_card[one][k] for k in ("do", "dont", "unsure", "voters")} == {
        "do": 3,
        "dont": 0,
        "unsure": 0,
        "voters": 3,
    }
    assert {k: by_card[two][k] for k in ("do", "dont", "unsure", "voters")} == {
        "do": 1,
        "dont": 1,
        "unsure": 1,
        "voters": 3,
    }
    assert {k: by_card[three][k] for k in ("do", "dont", "unsure", "voters")} == {
        "do": 0,
        "dont": 1,
        "unsure": 0,
        "voters": 1,
    }
    assert by_card[one]["contested"] == 0.0
    assert by_card[two]["contested"] == round(1 - 1 / 3, 4)
    # Every card of the function is listed, the most contested first.
    assert len(results["cards"]) == len(function.cards)
    assert results["cards"][0]["card_id"] == two
    unvoted = [row for row in results["cards"] if row["card_id"] not in (one, two, three)]
    assert all(row["voters"] == 0 and row["contested"] == 0.0 for row in unvoted)
