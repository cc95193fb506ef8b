"""Development demo facilitator: created once, printed every start, never in production."""

from __future__ import annotations

from pathlib import Path

from app.db.engine import make_engine, make_sessionmaker
from app.services.facilitators import authenticate, create_facilitator, ensure_demo_facilitator


async def test_demo_account_created_once_and_password_kept(db_url: str, tmp_path: Path) -> None:
    engine = make_engine(db_url)
    maker = make_sessionmaker(engine)
    kept = tmp_path / "demo_password"
    try:
        async with maker() as session:
            first = await ensure_demo_facilitator(session, kept)
        assert first.created and first.password
        async with maker() as session:
            second = await ensure_demo_facilitator(session, kept)
            assert not second.created
            assert second.password == first.password
            assert await authenticate(session, first.email, first.password) is not None
    finally:
        await engine.dispose()


async def test_no_demo_account_when_a_real_one_exists(db_url: str, tmp_path: Path) -> None:
    engine = make_engine(db_url)
    maker = make_sessionmaker(engine)
    try:
        async with maker() as session:
            await create_facilitator(session, "real@agency.gov", "a real password")
            demo = await ensure_demo_facilitator(session, tmp_path / "demo_password")
        assert demo.email == "" and demo.password is None and not demo.created
        assert not (tmp_path / "demo_password").exists()
    finally:
        await engine.dispose()
