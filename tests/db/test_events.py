"""Event numbers: assigned atomically per workshop, no repeats, no holes."""

from __future__ import annotations

import asyncio

import pytest
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.db.engine import begin_consistent_read, make_engine, make_sessionmaker
from app.db.models import Event, Facilitator, Workshop
from app.services.events import append_event


async def _workshop(maker, code: str) -> str:
    async with maker() as session:
        fac = Facilitator(email=f"{code}@x.gov", display_name="F", password_hash="x")
        session.add(fac)
        await session.flush()
        workshop = Workshop(
            facilitator_id=fac.id, title="T", definition_id="d", definition={}, join_code=code
        )
        session.add(workshop)
        await session.commit()
        return workshop.id


async def test_concurrent_appends_number_without_holes(db_url: str) -> None:
    engine = make_engine(db_url)
    maker = make_sessionmaker(engine)
    try:
        first = await _workshop(maker, "AAAAAA")
        second = await _workshop(maker, "BBBBBB")

        async def add(workshop_id: str, i: int) -> int:
            async with maker() as session:
                event = await append_event(session, workshop_id, "test.done", {"i": i}, None)
                await session.commit()
                return event.seq

        seqs = await asyncio.gather(*(add(first if i % 3 else second, i) for i in range(30)))
        async with maker() as session:
            for workshop_id in (first, second):
                rows = (
                    await session.exec(select(Event).where(Event.workshop_id == workshop_id))
                ).all()
                numbers = sorted(e.seq for e in rows)
                assert numbers == list(range(1, len(rows) + 1))
                stored = await session.get(Workshop, workshop_id)
                assert stored is not None and stored.seq == len(rows)
        assert len(seqs) == 30
    finally:
        await engine.dispose()


async def test_rolled_back_event_gives_its_number_back(db_url: str) -> None:
    engine = make_engine(db_url)
    maker = make_sessionmaker(engine)
    try:
        workshop_id = await _workshop(maker, "CCCCCC")
        async with maker() as session:
            event = await append_event(session, workshop_id, "test.lost", {}, None)
            assert event.seq == 1
            await session.rollback()
        async with maker() as session:
            event = await append_event(session, workshop_id, "test.kept", {}, None)
            await session.commit()
            assert event.seq == 1
            types = (await session.exec(select(Event.type))).all()
            assert types == ["test.kept"]
    finally:
        await engine.dispose()


async def _count(session: AsyncSession, workshop_id: str) -> int:
    rows = (await session.exec(select(Event).where(Event.workshop_id == workshop_id))).all()
    return len(rows)


async def test_consistent_read_does_not_see_later_commits(db_url: str) -> None:
    """A snapshot's seq and its rows come from one moment, whatever commits meanwhile."""
    engine = make_engine(db_url)
    maker = make_sessionmaker(engine)
    try:
        workshop_id = await _workshop(maker, "DDDDDD")
        for consistent in (False, True):
            async with maker() as reader:
                if consistent:
                    await begin_consistent_read(reader)
                seq = (
                    await reader.exec(select(Workshop.seq).where(Workshop.id == workshop_id))
                ).one()
                before = await _count(reader, workshop_id)
                assert before == seq
                async with maker() as writer:
                    await append_event(writer, workshop_id, "test.done", {}, None)
                    await writer.commit()
                after = await _count(reader, workshop_id)
                # Without it the second read sees the new event (the check can fail).
                assert after == (before if consistent else before + 1)
    finally:
        await engine.dispose()


async def test_consistent_read_must_come_first(db_url: str) -> None:
    engine = make_engine(db_url)
    maker = make_sessionmaker(engine)
    try:
        async with maker() as session:
            await session.exec(select(Workshop.seq))
            with pytest.raises(RuntimeError):
                await begin_consistent_read(session)
    finally:
        await engine.dispose()
