"""Redis pub/sub hub: fan-out across worker processes and hosts.

Every workshop is the channel `<prefix><workshop_id>`. `publish` sends the JSON
message with PUBLISH on a pooled client. Each process runs ONE subscriber task that
PSUBSCRIBEs `<prefix>*` and hands each message to this process's listeners (a
message for a workshop that no one on this process follows is dropped unparsed).

The subscriber owns its connection lifecycle instead of relying on redis-py's
silent reconnect: every attempt uses a fresh client (no library retries); on any
error it logs a warning (host/port only, never the password), closes everything,
backs off (0.1 s doubling to 5 s, jittered) and tries again. Redis pub/sub drops
whatever was published while we were away, so after each subscription that follows
a failure every local listener gets `RESYNC` and reloads its state from the
database. A silently dead connection is noticed by our own PING: after
`ping_interval` seconds without traffic we ping, and without any reply for twice
that the connection is declared dead.

`start()` waits (at most `start_timeout`) for the first attempt's outcome. If Redis
is down it logs a warning and returns: the server still starts, the subscriber keeps
retrying, and `publish` raises `HubUnavailable` until Redis is back. The events are
already committed to the database, so clients catch up by sequence number.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from typing import Any
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from app.realtime.hub import RESYNC, Hub, Message

log = logging.getLogger(__name__)

BACKOFF_START = 0.1
BACKOFF_MAX = 5.0


class HubUnavailable(RuntimeError):
    """Redis could not carry a message (the event itself is already stored)."""


class RedisHub(Hub):
    def __init__(
        self,
        url: str,
        *,
        channel_prefix: str = "cxw:workshop:",
        client_name: str = "cxw-hub",
        ping_interval: float = 5.0,
        start_timeout: float = 5.0,
    ) -> None:
        super().__init__()
        self._url = url
        self._prefix = channel_prefix
        self._name = client_name
        self._ping_interval = ping_interval
        self._start_timeout = start_timeout
        parts = urlsplit(url)
        self._where = f"{parts.hostname or 'localhost'}:{parts.port or 6379}"  # no password
        self._client: Redis | None = None
        self._task: asyncio.Task[None] | None = None
        self._settled = asyncio.Event()  # the first attempt succeeded or failed
        self._failures = 0
        self._resync = False
        self.subscribed = False

    def _redis(self, role: str, **kwargs: Any) -> Redis:
        return Redis.from_url(
            self._url,
            client_name=f"{self._name}-{role}",
            retry=Retry(NoBackoff(), 0),  # errors reach us; we reconnect ourselves
            socket_connect_timeout=2,
            socket_timeout=2,
            **kwargs,
        )

    async def start(self) -> None:
        if self._task is not None:
            return
        self._client = self._redis("pub")
        self._task = asyncio.create_task(self._run(), name="redis-hub-subscriber")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._settled.wait(), self._start_timeout)
        if not self.subscribed:
            log.warning("Redis hub at %s not subscribed yet; retrying in background", self._where)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait([task])
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def publish(self, workshop_id: str, message: Message) -> None:
        if self._client is None:
            raise HubUnavailable("RedisHub.publish called before start()")
        data = json.dumps(message, separators=(",", ":"))
        error: Exception | None = None
        for _attempt in range(2):  # the failed connection is dropped; retry reconnects
            try:
                await self._client.publish(self._prefix + workshop_id, data)
                return
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                error = exc
            except RedisError as exc:
                error = exc
                break
        raise HubUnavailable(f"cannot publish to Redis at {self._where}: {error}") from error

    async def _run(self) -> None:
        while True:
            client = self._redis("sub")  # bytes: a message no one here hears is not decoded
            pubsub = client.pubsub()
            delay = BACKOFF_START
            try:
                await pubsub.psubscribe(self._prefix + "*")
                await self._listen(pubsub)
            except Exception as exc:
                self._failures += 1
                self._resync = True
                delay = min(BACKOFF_MAX, BACKOFF_START * 2 ** (self._failures - 1))
                delay *= random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not crypto
                log.warning(
                    "Redis hub at %s unavailable (%s: %s); reconnecting in %.1f s",
                    self._where,
                    type(exc).__name__,
                    exc,
                    delay,
                    exc_info=not isinstance(exc, RedisError | OSError),
                )
            finally:
                self.subscribed = False
                await pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]
                await client.aclose()
            self._settled.set()
            await asyncio.sleep(delay)

    async def _listen(self, pubsub: PubSub) -> None:
        loop = asyncio.get_running_loop()
        last_seen, pinged = loop.time(), False
        while True:
            msg = await pubsub.get_message(timeout=self._ping_interval / 2)
            now = loop.time()
            if msg is None:
                idle = now - last_seen
                if pinged and idle >= 2 * self._ping_interval:
                    raise RedisConnectionError(f"no reply to PING for {idle:.1f} s")
                if not pinged and idle >= self._ping_interval:
                    await pubsub.ping()
                    pinged = True
                continue
            last_seen, pinged = now, False
            if msg["type"] == "psubscribe":
                self._on_subscribed()
            elif msg["type"] == "pmessage":
                self._on_message(msg["channel"], msg["data"])

    def _on_subscribed(self) -> None:
        self.subscribed = True
        self._failures = 0
        self._settled.set()
        if self._resync:
            self._resync = False
            log.info("Redis hub at %s resubscribed; resyncing local clients", self._where)
            self.deliver_everywhere(RESYNC)

    def _on_message(self, channel: bytes, data: bytes) -> None:
        # Every worker hears every workshop (one PSUBSCRIBE); only those with someone
        # of that workshop connected here parse the message.
        workshop_id = channel.decode(errors="replace").removeprefix(self._prefix)
        if workshop_id not in self._listeners:
            return
        try:
            message = json.loads(data)
        except ValueError:
            message = None
        if not isinstance(message, dict):
            log.warning("ignoring malformed hub message for workshop %s", workshop_id)
            return
        self.deliver(workshop_id, message)
