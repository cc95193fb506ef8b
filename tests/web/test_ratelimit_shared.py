"""With Redis, every worker counts the same attempts; without it, each its own."""

from __future__ import annotations

import uuid
from contextlib import AsyncExitStack

import httpx
import pytest
from redis.asyncio import Redis

from app.config import Settings
from app.main import create_app
from app.web.ratelimit import SIGN_IN_LIMIT, RedisAttemptLimiter
from tests.conftest import FacilitatorLogin, make_facilitator, make_settings


async def _workers(
    stack: AsyncExitStack, settings: Settings, prefix: str
) -> list[httpx.AsyncClient]:
    """Two apps on one database, as two workers behind a load balancer."""
    clients = []
    for _ in range(2):
        app = create_app(settings)
        limiter = app.state.sign_in_limiter
        if isinstance(limiter, RedisAttemptLimiter):
            limiter.prefix = prefix  # this test's own keys
        await stack.enter_async_context(app.router.lifespan_context(app))
        transport = httpx.ASGITransport(app=app)
        clients.append(
            await stack.enter_async_context(
                httpx.AsyncClient(transport=transport, base_url="http://testserver")
            )
        )
    return clients


async def _guess_across(clients: list[httpx.AsyncClient], fac: FacilitatorLogin) -> list[int]:
    """The limit's worth of wrong passwords, alternating workers; then the right one on each."""
    for i in range(SIGN_IN_LIMIT[0]):
        wrong = await clients[i % 2].post(
            "/api/auth/token", json={"email": fac.email, "password": "wrong guess!"}
        )
        assert wrong.status_code == 401
    right = {"email": fac.email, "password": fac.password}
    return [(await c.post("/api/auth/token", json=right)).status_code for c in clients]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_workers_share_sign_in_limits_through_redis(db_url: str, redis_url: str) -> None:
    prefix = f"test:{uuid.uuid4().hex}"
    async with AsyncExitStack() as stack:
        shared = await _workers(stack, make_settings(db_url, redis_url=redis_url), prefix)
        fac = await make_facilitator(shared[0], make_settings(db_url))
        assert await _guess_across(shared, fac) == [429, 429]
    redis = Redis.from_url(redis_url)
    try:
        keys = [k async for k in redis.scan_iter(f"{prefix}:*")]
        ttls = [await redis.ttl(k) for k in keys]
        assert ttls and all(0 < t <= SIGN_IN_LIMIT[1] + 1 for t in ttls)  # they expire
        await redis.delete(*keys)
    finally:
        await redis.aclose()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_without_redis_each_worker_counts_alone(db_url: str) -> None:
    """The contrast that shows the shared test above can fail."""
    async with AsyncExitStack() as stack:
        apart = await _workers(stack, make_settings(db_url), "unused")
        fac = await make_facilitator(apart[0], make_settings(db_url))
        assert await _guess_across(apart, fac) == [200, 200]


async def test_redis_down_falls_back_to_this_worker() -> None:
    dead = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    limiter = RedisAttemptLimiter(dead, "test", limit=3, window_s=60)
    try:
        for _ in range(3):
            assert await limiter.blocked("k") is None
            await limiter.failed("k")
        wait = await limiter.blocked("k")
        assert wait is not None and 0 < wait <= 60
    finally:
        await dead.aclose()
