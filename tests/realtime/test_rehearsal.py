"""A worker on PostgreSQL rehearses a facilitator's commands on each pooled
connection when it starts, and rolls them back (app/services/live/rehearsal.py).

What is observable: the real handlers ran, on as many connections at once as the
pool keeps, and nothing of it was written, published or cached. That the
connections are faster afterwards is a benchmark's matter (docs/benchmarks.md,
change 39), not a test's.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from sqlalchemy.pool import QueuePool

from app.main import create_app
from app.services.live import engine as live_engine
from app.services.live.context import Ctx
from app.services.live.engine import LiveService
from app.services.live.rehearsal import script
from tests.conftest import make_settings

pytestmark = pytest.mark.postgres

TABLES = ("facilitator", "workshop", "participant", "event", "levelround")


async def _counts(pg_url: str) -> dict[str, int]:
    conn = await asyncpg.connect(pg_url.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        return {t: await conn.fetchval(f"SELECT count(*) FROM {t}") for t in TABLES}
    finally:
        await conn.close()


@pytest.fixture
def ran(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Every facilitator handler wrapped to count its runs (each run to its end)."""
    counts: Counter[str] = Counter()

    def counted(name: str, handler: Any) -> Any:
        async def run(ctx: Ctx, command: Any) -> None:
            await handler(ctx, command)
            counts[name] += 1

        return run

    for name, handler in list(live_engine.HANDLERS.items()):
        monkeypatch.setitem(live_engine.HANDLERS, name, counted(name, handler))
    return counts


@pytest.fixture
async def published(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[list[Any]]:
    sent: list[Any] = []
    original = LiveService.publish

    async def publish(self: LiveService, workshop_id: str, message: dict[str, Any]) -> None:
        sent.append(message)
        await original(self, workshop_id, message)

    monkeypatch.setattr(LiveService, "publish", publish)
    yield sent


async def test_each_pooled_connection_runs_a_facilitators_commands_and_keeps_nothing(
    pg_url: str, ran: Counter[str], published: list[Any]
) -> None:
    before = await _counts(pg_url)
    app = create_app(make_settings(pg_url))
    definition = next(iter(app.state.definitions.values()))
    async with app.router.lifespan_context(app):
        pool = app.state.engine.sync_engine.pool
        assert isinstance(pool, QueuePool)
        assert app.state.rehearsed == pool.size() == 5
        # Five at once: the pool opened all five, and all are back.
        assert pool.checkedin() == 5 and pool.checkedout() == 0
        live: LiveService = app.state.live
        assert live.cache._items == {}  # no throwaway workshop kept
        assert await _counts(pg_url) == before
    kinds = Counter(command["type"] for command in script(definition))
    assert {"workshop.start", "phase.goto", "votes.reveal", "votes.hide"} <= set(kinds)
    # Every command of the script ran to its end on each of the five connections.
    assert ran == Counter({kind: 5 * n for kind, n in kinds.items()})
    assert published == []


async def test_a_rehearsal_that_fails_leaves_the_worker_starting_cold(
    pg_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(ctx: Ctx, command: Any) -> None:
        raise RuntimeError("rehearsal breaks")

    monkeypatch.setitem(live_engine.HANDLERS, "votes.reveal", broken)
    before = await _counts(pg_url)
    app = create_app(make_settings(pg_url))
    with caplog.at_level(logging.WARNING, logger="app.services.live.rehearsal"):
        async with app.router.lifespan_context(app):
            assert app.state.rehearsed == 0
            assert app.state.engine.sync_engine.pool.checkedout() == 0
            assert await _counts(pg_url) == before
    assert "rehearsal breaks" in caplog.text
