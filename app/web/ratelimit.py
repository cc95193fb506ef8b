"""Attempt limits for guessable secrets: passwords and join codes.

A sliding window per client address and per target (an email, a code). With one
worker the window lives in memory. With `REDIS_URL` set it lives in Redis (a sorted
set of attempt times per key), so every worker and host counts the same attempts: two
replicas behind a load balancer do not give an attacker twice the guesses. If Redis
cannot be reached the worker falls back to its own memory rather than refusing
everyone or letting everyone through.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import defaultdict, deque

from fastapi import HTTPException, Request
from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

SIGN_IN_LIMIT = (10, 300.0)  # 10 failed sign-ins per address per 5 minutes
JOIN_LIMIT = (30, 300.0)  # 30 join attempts with a wrong code per address per 5 minutes


class AttemptLimiter:
    """Failed attempts per key in a sliding window, in this worker's memory."""

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit = limit
        self.window_s = window_s
        self._hits: dict[str, deque[float]] = defaultdict(deque)

    def _trim(self, key: str, now: float) -> deque[float]:
        hits = self._hits[key]
        while hits and hits[0] <= now - self.window_s:
            hits.popleft()
        if not hits:
            del self._hits[key]
            return deque()
        return hits

    async def blocked(self, key: str) -> float | None:
        """Seconds to wait when `key` has used up its attempts, else None."""
        now = time.monotonic()
        hits = self._trim(key, now)
        if len(hits) >= self.limit:
            return max(1.0, hits[0] + self.window_s - now)
        return None

    async def failed(self, key: str) -> None:
        self._hits[key].append(time.monotonic())

    def reset(self) -> None:
        self._hits.clear()


class RedisAttemptLimiter(AttemptLimiter):
    """The same window in Redis, shared by every worker that uses the same prefix."""

    def __init__(self, redis: Redis, prefix: str, limit: int, window_s: float) -> None:
        super().__init__(limit, window_s)
        self.redis = redis
        self.prefix = prefix

    def _key(self, key: str) -> str:
        return f"{self.prefix}:{key}"

    async def blocked(self, key: str) -> float | None:
        now = time.time()
        name = self._key(key)
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.zremrangebyscore(name, 0, now - self.window_s)
                pipe.zcard(name)
                pipe.zrange(name, 0, 0, withscores=True)
                _, count, oldest = await pipe.execute()
        except (RedisError, OSError) as exc:
            log.warning("attempt limits: Redis unavailable (%s); using this worker's", exc)
            return await super().blocked(key)
        if int(count) >= self.limit and oldest:
            return max(1.0, float(oldest[0][1]) + self.window_s - now)
        return None

    async def failed(self, key: str) -> None:
        now = time.time()
        name = self._key(key)
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                # A random member: two failures in the same microsecond both count.
                pipe.zadd(name, {f"{now:.6f}:{secrets.token_hex(4)}": now})
                pipe.expire(name, int(self.window_s) + 1)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            log.warning("attempt limits: Redis unavailable (%s); using this worker's", exc)
            await super().failed(key)


def make_limiters(redis_url: str | None) -> tuple[AttemptLimiter, AttemptLimiter, Redis | None]:
    """The sign-in and join limiters, and the Redis client they share (to close)."""
    if not redis_url:
        return AttemptLimiter(*SIGN_IN_LIMIT), AttemptLimiter(*JOIN_LIMIT), None
    redis = Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=2)
    return (
        RedisAttemptLimiter(redis, "cxw:attempts:sign-in", *SIGN_IN_LIMIT),
        RedisAttemptLimiter(redis, "cxw:attempts:join", *JOIN_LIMIT),
        redis,
    )


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def check(limiter: AttemptLimiter, key: str, what: str) -> None:
    wait = await limiter.blocked(key)
    if wait is not None:
        raise HTTPException(
            429,
            f"too many {what}; try again in {int(wait) + 1} seconds",
            headers={"Retry-After": str(int(wait) + 1)},
        )
