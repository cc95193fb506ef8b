"""Fixtures for the export tests: seeded workshops and a way to read the database."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel.ext.asyncio.session import AsyncSession

from app.config import Settings
from app.db.engine import make_engine, make_sessionmaker
from tests.conftest import FacilitatorLogin
from tests.exports.factory import seed_workshop

GOLDEN = Path(__file__).parent / "golden"
Seed = Callable[..., Awaitable[str]]


@asynccontextmanager
async def db_session(settings: Settings) -> AsyncIterator[AsyncSession]:
    engine = make_engine(settings.database_url)
    try:
        async with make_sessionmaker(engine)() as session:
            yield session
    finally:
        await engine.dispose()


@pytest.fixture
def seed(settings: Settings, facilitator: FacilitatorLogin) -> Seed:
    """Seed a workshop owned by ``facilitator``; returns its id."""

    async def _seed(**options: Any) -> str:
        async with db_session(settings) as session:
            workshop = await seed_workshop(session, facilitator.id, **options)
            return workshop.id

    return _seed


async def export(
    client: httpx.AsyncClient, fac: FacilitatorLogin, workshop_id: str, **params: str
) -> httpx.Response:
    response = await client.get(
        f"/api/workshops/{workshop_id}/export", params=params, headers=fac.headers
    )
    assert response.status_code == 200, response.text
    return response


def check_golden(name: str, content: bytes) -> None:
    """Compare with tests/exports/golden/<name>; UPDATE_GOLDEN=1 rewrites the file."""
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.write_bytes(content)
    assert path.exists(), f"no golden file {path}; run with UPDATE_GOLDEN=1 to create it"
    expected = path.read_bytes()
    assert content == expected, f"{name} differs from its golden file (UPDATE_GOLDEN=1 to accept)"
