"""Redis pub/sub hub: fan-out across worker processes and hosts.

Every workshop is the channel `<prefix><workshop_id>`. `publish` hands the message
to this process's own listeners at once and sends it, as JSON behind the worker's
origin tag, with PUBLISH on the worker's own publishing connection (`Publisher`).
Each process runs ONE subscriber task that PSUBSCRIBEs `<prefix>*` and hands each
message to this process's listeners; it drops unparsed a message this process sent
itself (its listeners have it already) or one for a workshop that no one on this
process follows.

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
import os
import random
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.client import PubSub
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from app.realtime.hub import Hub, Message

log = logging.getLogger(__name__)

BACKOFF_START = 0.1
BACKOFF_MAX = 5.0
# A PUBLISH without its reply for this long: the connection is taken for dead.
PUBLISH_TIMEOUT = 2.0
# Every message starts with its worker's origin: this many random bytes in hex and a
# space, then the JSON.
ORIGIN_BYTES = 6
ORIGIN_LENGTH = 2 * ORIGIN_BYTES + 1


class HubUnavailable(RuntimeError):
    """Redis could not carry a message (the event itself is already stored)."""


class Publisher:
    """This worker's PUBLISH connection: commands written in call order, replies
    read in order by one task.

    redis-py's `Redis.publish` takes a connection from its pool, sends, reads the
    reply and gives the connection back, each time: about 110 µs of CPU in a tight
    loop and 460 µs after a pause, for every stored event (docs/benchmarks.md). Here
    a publish packs and writes its command at once (so commands keep the order of
    the calls) and waits for its own reply, which the reader task hands out in
    order. A reply that takes longer than `timeout` (a silently dead connection)
    or any error on the connection drops it: every publish still waiting gets the
    error, and the next one connects anew. Connecting, handshake included, is held
    to the same `timeout`.
    """

    def __init__(self, connect: Callable[[], AbstractConnection], timeout: float) -> None:
        self._make = connect
        self._timeout = timeout
        self._conn: AbstractConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._replies: deque[asyncio.Future[Any]] = deque()
        self._connecting = asyncio.Lock()

    async def publish(self, channel: str, data: str) -> None:
        await self.replied(*await self.send(channel, data))

    async def send(self, channel: str, data: str) -> tuple[AbstractConnection, asyncio.Future[Any]]:
        """Write the PUBLISH now, in call order; `replied` waits for its reply."""
        conn = self._conn or await self._connect()
        reply = asyncio.get_running_loop().create_future()
        self._replies.append(reply)
        try:
            # No socket timeout on this connection: the write happens in this call,
            # before anything else can run (`drain` may wait after it, on a full buffer).
            await conn.send_packed_command(conn.pack_command("PUBLISH", channel, data), False)
        except BaseException as exc:
            await self._drop(conn, exc)
            raise
        return conn, reply

    async def replied(self, conn: AbstractConnection, reply: asyncio.Future[Any]) -> None:
        """The reply to one `send`, within the timeout (else the connection is dropped)."""
        try:
            async with asyncio.timeout(self._timeout):
                await reply
        except TimeoutError as exc:
            error = RedisTimeoutError(f"no reply to PUBLISH within {self._timeout} s")
            await self._drop(conn, error)
            raise error from exc

    async def _connect(self) -> AbstractConnection:
        async with self._connecting:
            if self._conn is None:
                conn = self._make()
                try:
                    # The handshake has no socket timeout either: a server that
                    # accepts and never answers must not hold every publish here.
                    async with asyncio.timeout(self._timeout):
                        await conn.connect()  # type: ignore[no-untyped-call, unused-ignore]
                except TimeoutError as exc:
                    with contextlib.suppress(Exception):
                        await conn.disconnect(nowait=True)
                    raise RedisTimeoutError(
                        f"no reply from Redis within {self._timeout} s of connecting"
                    ) from exc
                self._conn = conn
                self._reader = asyncio.create_task(self._read(conn), name="redis-hub-publisher")
            return self._conn

    async def _read(self, conn: AbstractConnection) -> None:
        replies = self._replies
        try:
            while True:
                try:
                    response: Any = await conn.read_response(disconnect_on_error=False)
                except ResponseError as exc:
                    response = exc  # an error reply: for its publish, the rest go on
                reply = replies.popleft() if replies else None
                if reply is None or reply.done():  # none waiting, or it gave up
                    continue
                if isinstance(response, Exception):
                    reply.set_exception(response)
                else:
                    reply.set_result(response)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await self._drop(conn, exc)

    async def _drop(self, conn: AbstractConnection, error: BaseException) -> None:
        """Forget `conn` (once): whoever waits for a reply on it gets `error`."""
        if self._conn is not conn:
            return
        self._conn = None
        replies, self._replies = self._replies, deque()
        for reply in replies:
            if not reply.done():
                reply.set_exception(
                    error
                    if isinstance(error, RedisError)
                    else RedisConnectionError(f"{type(error).__name__}: {error}")
                )
        reader, self._reader = self._reader, None
        if reader is not None and reader is not asyncio.current_task():
            reader.cancel()
        with contextlib.suppress(Exception):
            await conn.disconnect(nowait=True)

    async def close(self) -> None:
        conn = self._conn
        if conn is not None:
            await self._drop(conn, RedisConnectionError("the hub stopped"))


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
        self._publisher: Publisher | None = None
        self._task: asyncio.Task[None] | None = None
        self._settled = asyncio.Event()  # the first attempt succeeded or failed
        self._failures = 0
        self._resync = False
        self.subscribed = False
        self._origin = os.urandom(ORIGIN_BYTES).hex() + " "
        self._origin_tag = self._origin.encode()

    def _redis(self, role: str, **kwargs: Any) -> Redis:
        return Redis.from_url(
            self._url,
            client_name=f"{self._name}-{role}",
            retry=Retry(NoBackoff(), 0),  # errors reach us; we reconnect ourselves
            socket_connect_timeout=2,
            socket_timeout=2,
            **kwargs,
        )

    def _publisher_connection(self) -> AbstractConnection:
        pool = ConnectionPool.from_url(
            self._url,
            client_name=f"{self._name}-pub",
            retry=Retry(NoBackoff(), 0),
            socket_connect_timeout=2,
            socket_timeout=None,  # the publisher times its replies itself
        )
        connection: AbstractConnection = pool.make_connection()  # type: ignore[no-untyped-call, unused-ignore]
        return connection

    async def start(self) -> None:
        if self._task is not None:
            return
        self._publisher = Publisher(self._publisher_connection, PUBLISH_TIMEOUT)
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
        publisher, self._publisher = self._publisher, None
        if publisher is not None:
            await publisher.close()

    async def publish(self, workshop_id: str, message: Message) -> None:
        await (await self.send(workshop_id, message))

    def wire(self, workshop_id: str) -> tuple[str, str]:
        """The workshop's channel and this worker's origin: a message published there
        with it is heard by the other workers and not again by this one."""
        return self._prefix + workshop_id, self._origin

    async def send(self, workshop_id: str, message: Message) -> Awaitable[None]:
        """Write the PUBLISH now and deliver to this worker's listeners (also when
        Redis cannot take it); the awaitable waits for Redis's reply (see Hub.send).

        A publish whose connection fails (before or after the write) is tried once
        more on a new connection, inside the awaitable: that second try may reach
        the room after events sent later, which the room's seq check sorts out.
        """
        publisher = self._publisher
        if publisher is None:
            raise HubUnavailable("RedisHub.publish called before start()")
        channel = self._prefix + workshop_id
        data = self._origin + json.dumps(message, separators=(",", ":"))
        try:
            sent = await publisher.send(channel, data)
        except (RedisConnectionError, RedisTimeoutError, OSError):
            return self._again(publisher, channel, data)
        except RedisError as exc:
            raise self._unavailable(exc) from exc
        finally:
            # Written to Redis first (the other workers' copy is on its way), then to
            # this worker's own listeners, which never hear it back from Redis (and
            # get it even when Redis cannot take it).
            self.deliver(workshop_id, message)
        return self._replied(publisher, channel, data, sent)

    async def _replied(
        self,
        publisher: Publisher,
        channel: str,
        data: str,
        sent: tuple[AbstractConnection, asyncio.Future[Any]],
    ) -> None:
        try:
            await publisher.replied(*sent)
        except (RedisConnectionError, RedisTimeoutError, OSError):
            await self._again(publisher, channel, data)
        except RedisError as exc:
            raise self._unavailable(exc) from exc

    async def _again(self, publisher: Publisher, channel: str, data: str) -> None:
        """The second try, after the failed connection was dropped: it reconnects."""
        try:
            await publisher.publish(channel, data)
        except (RedisError, OSError) as exc:
            raise self._unavailable(exc) from exc

    def _unavailable(self, error: BaseException) -> HubUnavailable:
        return HubUnavailable(f"cannot publish to Redis at {self._where}: {error}")

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
            self.resync()

    def _on_message(self, channel: bytes, data: bytes) -> None:
        # Every worker hears every workshop (one PSUBSCRIBE); only those with someone
        # of that workshop connected here parse the message, unless this worker sent
        # it (its listeners had it then).
        workshop_id = channel.decode(errors="replace").removeprefix(self._prefix)
        if data.startswith(self._origin_tag) or workshop_id not in self._listeners:
            return
        message = None
        if data[ORIGIN_LENGTH - 1 : ORIGIN_LENGTH] == b" ":
            with contextlib.suppress(ValueError):
                message = json.loads(data[ORIGIN_LENGTH:])
        if not isinstance(message, dict):
            log.warning("ignoring malformed hub message for workshop %s", workshop_id)
            return
        self.deliver(workshop_id, message)
