"""Attempt limits for guessable secrets: passwords and join codes.

A sliding window per client address and per target (an email, a code). It lives in
each worker's memory: with N workers an attacker gets at most N times the limit,
still far too few guesses for a 6-character code (31^6) or an argon2 password.
"""

from __future__ import annotations

import time
from collections import defaultdict, deque

from fastapi import HTTPException, Request

SIGN_IN_LIMIT = (10, 300.0)  # 10 failed sign-ins per address per 5 minutes
JOIN_LIMIT = (30, 300.0)  # 30 join attempts with a wrong code per address per 5 minutes


class AttemptLimiter:
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

    def blocked(self, key: str) -> float | None:
        """Seconds to wait when `key` has used up its attempts, else None."""
        now = time.monotonic()
        hits = self._trim(key, now)
        if len(hits) >= self.limit:
            return max(1.0, hits[0] + self.window_s - now)
        return None

    def failed(self, key: str) -> None:
        self._hits[key].append(time.monotonic())

    def reset(self) -> None:
        self._hits.clear()


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def check(limiter: AttemptLimiter, key: str, what: str) -> None:
    wait = limiter.blocked(key)
    if wait is not None:
        raise HTTPException(
            429,
            f"too many {what}; try again in {int(wait) + 1} seconds",
            headers={"Retry-After": str(int(wait) + 1)},
        )
