"""Shared fixtures: settings, a migrated database on each backend, an API client."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy import text
from sqlmodel import SQLModel

from app.config import Settings
from app.db.engine import make_engine, make_sessionmaker
from app.db.migrate import upgrade
from app.main import create_app
from app.services.facilitators import create_facilitator
from tests import pg

TEST_SECRET = "test-secret-key-" + "x" * 40
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A migrated scratch PostgreSQL database of its own (dropped afterwards)."""
    url = pg.create_migrated_database()
    yield url
    pg.drop_database(url)


@pytest.fixture
async def redis_url() -> str:
    """The machine's Redis (fails in CI when it is missing, skips elsewhere)."""
    client = Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        await client.ping()
    except Exception as exc:
        pg.require_service("Redis", exc)
    finally:
        await client.aclose()
    return REDIS_URL


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """One migrated scratch PostgreSQL database for the session."""
    url = pg.create_migrated_database()
    yield url
    pg.drop_database(url)


async def _truncate(url: str) -> None:
    engine = make_engine(url)
    tables = ", ".join(f'"{t.name}"' for t in SQLModel.metadata.sorted_tables)
    async with engine.begin() as conn:
        await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    await engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A migrated, empty database URL, on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"
        engine = make_engine(url)
        await upgrade(engine)
        await engine.dispose()
        yield url
    else:
        url = request.getfixturevalue("pg_database")
        await _truncate(url)
        yield url


def make_settings(database_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "environment": "test",
        "database_url": database_url,
        "secret_key": TEST_SECRET,
        "public_url": "http://testserver",
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def settings(db_url: str) -> Settings:
    return make_settings(db_url)


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            c.app = app  # type: ignore[attr-defined]
            yield c


@dataclass
class FacilitatorLogin:
    id: str
    email: str
    password: str
    headers: dict[str, str]


async def make_facilitator(
    client: httpx.AsyncClient, settings: Settings, email: str = "lead@agency.gov"
) -> FacilitatorLogin:
    password = "correct horse battery"
    engine = make_engine(settings.database_url)
    async with make_sessionmaker(engine)() as session:
        facilitator = await create_facilitator(session, email, password, "Lead")
    await engine.dispose()
    response = await client.post("/api/auth/token", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]
    return FacilitatorLogin(facilitator.id, email, password, {"Authorization": f"Bearer {token}"})


@pytest.fixture
async def facilitator(client: httpx.AsyncClient, settings: Settings) -> FacilitatorLogin:
    return await make_facilitator(client, settings)
