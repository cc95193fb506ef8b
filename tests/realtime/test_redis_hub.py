"""RedisHub against a real Redis (TEST_REDIS_URL, default redis://127.0.0.1:6379/0).

Without Redis these tests skip, or fail when CI=true. Each test uses its own random
channel prefix and client names, so parallel runs on one server never interfere.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from app.realtime.hub import RESYNC, Message, make_hub
from app.realtime.redis_hub import HubUnavailable, Publisher, RedisHub
from tests.pg import require_service

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
DEAD_URL = "redis://:s3cret-password@127.0.0.1:1/0"

MakeHub = Callable[..., Awaitable[RedisHub]]


async def eventually(predicate: Callable[[], bool], what: str, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.01)


@pytest.fixture
async def admin() -> AsyncIterator[Redis]:
    client = Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
    try:
        await client.ping()
    except (RedisError, OSError) as exc:
        await client.aclose()
        require_service("Redis", exc)
    yield client
    await client.aclose()


@pytest.fixture
async def hubs(admin: Redis) -> AsyncIterator[MakeHub]:
    """Start RedisHubs ("workers") sharing one random channel prefix."""
    prefix = f"cxw-test:{uuid.uuid4().hex}:"
    started: list[RedisHub] = []

    async def make(url: str = REDIS_URL, **kwargs: Any) -> RedisHub:
        name = f"cxw-test-{uuid.uuid4().hex}"
        hub = RedisHub(url, channel_prefix=prefix, client_name=name, **kwargs)
        started.append(hub)
        await hub.start()
        return hub

    yield make
    for hub in started:
        await hub.stop()


@pytest.fixture
def parsed(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """What the hubs give `json.loads` from here on (the hub calls it by that name)."""
    seen: list[bytes] = []
    loads = json.loads

    def counting_loads(data: bytes) -> Any:
        seen.append(data)
        return loads(data)

    monkeypatch.setattr(json, "loads", counting_loads)
    return seen


async def kill_subscriber(admin: Redis, hub: RedisHub) -> None:
    """Kill only this hub's subscriber connection, found by its CLIENT SETNAME."""
    name = f"{hub._name}-sub"
    ids = [c["id"] for c in await admin.client_list() if c.get("name") == name]
    assert len(ids) == 1, f"expected one connection named {name}, found {ids}"
    await admin.client_kill_filter(_id=ids[0])


async def test_make_hub_with_url_is_redis() -> None:
    assert isinstance(make_hub(REDIS_URL), RedisHub)


async def test_message_from_one_worker_reaches_the_other_in_order(hubs: MakeHub) -> None:
    one, two = await hubs(), await hubs()
    assert one.subscribed and two.subscribed
    got: list[Message] = []
    mine: list[Message] = []
    two.subscribe("w1", got.append)
    one.subscribe("w1", mine.append)

    sent = [{"type": "event", "seq": i, "text": f"é {i}"} for i in range(200)]
    for message in sent:
        await one.publish("w1", message)

    await eventually(lambda: len(got) == 200 and len(mine) == 200, "200 messages on both")
    assert got == sent
    assert mine == sent


async def test_unsubscribed_and_other_workshops_get_nothing(hubs: MakeHub) -> None:
    one, two = await hubs(), await hubs()
    gone: list[Message] = []
    other: list[Message] = []
    marker: list[Message] = []
    two.subscribe("w2", gone.append)
    two.unsubscribe("w2", gone.append)
    two.subscribe("w3", other.append)
    two.subscribe("w1", marker.append)

    await one.publish("w2", {"type": "lost"})
    await one.publish("w1", {"type": "marker"})

    # One publisher connection and one subscriber connection keep order, so once
    # the marker has arrived the earlier message would have been delivered too.
    await eventually(lambda: marker == [{"type": "marker"}], "the marker")
    assert gone == []
    assert other == []


async def test_own_messages_are_heard_at_once_and_not_again_from_redis(
    hubs: MakeHub, parsed: list[bytes]
) -> None:
    """A worker's own listeners get its message when it is sent, before Redis has
    carried it anywhere; the copy Redis brings back is dropped unparsed."""
    one, two = await hubs(), await hubs()
    mine: list[Message] = []
    theirs: list[Message] = []
    one.subscribe("w1", mine.append)
    two.subscribe("w1", theirs.append)
    waiting = await one.send("w1", {"type": "first"})
    assert mine == [{"type": "first"}], "delivered here within send"
    await waiting
    await one.publish("w1", {"type": "second"})
    await eventually(lambda: len(theirs) == 2, "both messages on the other worker")
    assert theirs == [{"type": "first"}, {"type": "second"}]
    # `two`'s marker reaches `one` through Redis after the copies of `one`'s own
    # messages (one subscriber connection keeps Redis's order).
    await two.publish("w1", {"type": "marker"})
    await eventually(lambda: mine[-1:] == [{"type": "marker"}], "the marker on `one`")
    assert mine == [{"type": "first"}, {"type": "second"}, {"type": "marker"}], "not heard twice"
    assert parsed == [b'{"type":"first"}', b'{"type":"second"}', b'{"type":"marker"}'], (
        "each parsed only by the worker that did not send it"
    )


async def test_malformed_messages_are_ignored(
    hubs: MakeHub, admin: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    hub, sender = await hubs(), await hubs()
    got: list[Message] = []
    hub.subscribe("w1", got.append)

    with caplog.at_level(logging.WARNING, logger="app.realtime.redis_hub"):
        await admin.publish(hub._prefix + "w1", "not json")
        await admin.publish(hub._prefix + "w1", "0123456789ab [1, 2]")
        await admin.publish(hub._prefix + "w1", '0123456789ab-{"type": "no space"}')
        await sender.publish("w1", {"type": "ok"})

        await eventually(lambda: got == [{"type": "ok"}], "the valid message")
    assert caplog.text.count("ignoring malformed hub message") == 3


async def test_a_workshop_no_one_here_follows_is_not_parsed(
    hubs: MakeHub, parsed: list[bytes]
) -> None:
    hub, sender = await hubs(), await hubs()
    got: list[Message] = []
    hub.subscribe("w1", got.append)
    await sender.publish("w2", {"type": "elsewhere"})  # every worker hears it
    await sender.publish("w1", {"type": "here"})

    await eventually(lambda: got == [{"type": "here"}], "the message for w1")
    assert parsed == [b'{"type":"here"}']


async def test_resync_after_subscriber_connection_is_killed(hubs: MakeHub, admin: Redis) -> None:
    one, two = await hubs(), await hubs()
    a: list[Message] = []
    b: list[Message] = []
    untouched: list[Message] = []
    one.subscribe("w1", a.append)
    one.subscribe("w2", b.append)
    two.subscribe("w1", untouched.append)

    await kill_subscriber(admin, one)
    await eventually(lambda: a == [RESYNC] and b == [RESYNC], "RESYNC on every workshop")
    assert one.subscribed

    await two.publish("w1", {"type": "after"})
    await one.publish("w2", {"type": "after"})
    await eventually(lambda: a[-1:] == [{"type": "after"}], "delivery after reconnect")
    await eventually(lambda: b[-1:] == [{"type": "after"}], "delivery after reconnect")
    assert RESYNC not in untouched  # the other worker's connection was not affected
    await eventually(lambda: untouched == [{"type": "after"}], "the other worker")


class BlackholeProxy:
    """TCP proxy to Redis that can silently stop forwarding (a network partition)."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.frozen = False
        self.tasks: set[asyncio.Task[None]] = set()
        self.writers: list[asyncio.StreamWriter] = []

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        frozen_at_start = self.frozen
        while data := await reader.read(65536):
            if self.frozen == frozen_at_start:
                writer.write(data)
                await writer.drain()
        writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self.writers += [writer, up_writer]
        for task in (self._pipe(reader, up_writer), self._pipe(up_reader, writer)):
            self.tasks.add(asyncio.create_task(task))

    async def __aenter__(self) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for writer in self.writers:
            writer.close()
            await asyncio.gather(writer.wait_closed(), return_exceptions=True)
        await self.server.wait_closed()


async def test_silently_dead_connection_is_detected_by_ping(hubs: MakeHub) -> None:
    target = urlsplit(REDIS_URL)
    proxy = BlackholeProxy(target.hostname or "127.0.0.1", target.port or 6379)
    async with proxy as port:
        userinfo = target.netloc.rpartition("@")[0]
        netloc = f"{userinfo}@127.0.0.1:{port}" if userinfo else f"127.0.0.1:{port}"
        hub = await hubs(target._replace(netloc=netloc).geturl(), ping_interval=0.2)
        got: list[Message] = []
        hub.subscribe("w1", got.append)
        assert hub.subscribed

        proxy.frozen = True  # existing connections now drop everything; new ones work
        await eventually(lambda: got == [RESYNC], "RESYNC after a silent partition")
        sender = await hubs()  # straight to Redis: what `hub` hears comes through Redis
        await sender.publish("w1", {"type": "after"})
        await eventually(lambda: got == [RESYNC, {"type": "after"}], "delivery after reconnect")
        await hub.stop()


async def test_dead_redis_fails_fast_without_leaking_the_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hub = RedisHub(DEAD_URL, channel_prefix=f"cxw-test:{uuid.uuid4().hex}:")
    with caplog.at_level(logging.INFO, logger="app.realtime.redis_hub"):
        started = time.monotonic()
        await hub.start()  # logs and keeps retrying in the background
        assert not hub.subscribed
        got: list[Message] = []
        hub.subscribe("w1", got.append)
        with pytest.raises(HubUnavailable, match=r"127\.0\.0\.1:1\b"):
            await hub.publish("w1", {"type": "x"})
        assert got == [{"type": "x"}], "this worker's own listeners still have it"
        assert time.monotonic() - started < 2
        await hub.stop()
    assert "Redis hub at 127.0.0.1:1" in caplog.text
    assert "s3cret" not in caplog.text


async def test_publish_before_start_is_unavailable() -> None:
    with pytest.raises(HubUnavailable, match="before start"):
        await RedisHub(DEAD_URL).publish("w1", {})


async def _publisher_ids(admin: Redis, hub: RedisHub) -> list[str]:
    name = f"{hub._name}-pub"
    return [c["id"] for c in await admin.client_list() if c.get("name") == name]


async def test_concurrent_publishes_keep_their_order_on_one_connection(
    hubs: MakeHub, admin: Redis
) -> None:
    one, two = await hubs(), await hubs()
    got: list[Message] = []
    two.subscribe("w1", got.append)
    sent = [{"type": "event", "seq": i} for i in range(300)]
    # All at once: each writes its command when called, the replies come back in order.
    await asyncio.gather(*(one.publish("w1", message) for message in sent))
    await eventually(lambda: len(got) == 300, "300 messages")
    assert got == sent
    assert len(await _publisher_ids(admin, one)) == 1, "one publishing connection"


async def test_send_writes_at_once_and_the_reply_is_awaited_later(hubs: MakeHub) -> None:
    """`send` returns once the PUBLISH is written: the message reaches the other worker
    before anyone waits for Redis's reply, and sends keep their call order."""
    one, two = await hubs(), await hubs()
    got: list[Message] = []
    two.subscribe("w1", got.append)
    sent = [{"type": "event", "seq": i} for i in range(50)]
    waiting = [await one.send("w1", message) for message in sent]
    await eventually(lambda: len(got) == 50, "50 messages, no reply awaited yet")
    assert got == sent
    await asyncio.wait_for(asyncio.gather(*waiting), 5)


async def test_a_killed_publishing_connection_is_replaced(hubs: MakeHub, admin: Redis) -> None:
    one, two = await hubs(), await hubs()
    got: list[Message] = []
    two.subscribe("w1", got.append)
    await one.publish("w1", {"type": "before"})
    [first] = await _publisher_ids(admin, one)
    await admin.client_kill_filter(_id=first)
    # The next publish finds the connection gone (at once, or when its reply fails)
    # and goes out on a new one.
    await one.publish("w1", {"type": "after"})
    await eventually(lambda: got[-1:] == [{"type": "after"}], "the message after the kill")
    assert got[0] == {"type": "before"}
    [second] = await _publisher_ids(admin, one)
    assert second != first


async def test_an_error_reply_fails_only_its_own_publish() -> None:
    hub_name = f"cxw-test-{uuid.uuid4().hex}"
    hub = RedisHub(REDIS_URL, client_name=hub_name)
    publisher = Publisher(hub._publisher_connection, timeout=2)
    try:
        conn = await publisher._connect()
    except (RedisError, OSError) as exc:
        require_service("Redis", exc)
    # A command Redis refuses, written in the middle of good ones: its reply is an
    # error for it alone; the reader goes on and the others get their replies.
    loop = asyncio.get_running_loop()
    bad = loop.create_future()

    async def refused() -> None:
        publisher._replies.append(bad)
        await conn.send_packed_command(conn.pack_command("PUBLISH", "only-a-channel"), False)

    await asyncio.gather(
        publisher.publish("cxw-test:none", "a"), refused(), publisher.publish("cxw-test:none", "b")
    )
    with pytest.raises(RedisError, match="wrong number of arguments"):
        await bad
    # Still the same connection, still working.
    await asyncio.wait_for(publisher.publish("cxw-test:none", "c"), 2)
    assert publisher._conn is conn
    await publisher.close()


class SilentRedis:
    """A Redis stand-in that goes silent: it answers the handshake and swallows every
    PUBLISH (a publishing connection gone quiet: a network black hole, a frozen
    server), or with `handshake=False` answers nothing at all."""

    def __init__(self, *, handshake: bool = True) -> None:
        self.handshake = handshake
        self.connections = 0
        self.publishes = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> SilentRedis:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, ValueError):
            while header := await reader.readline():
                # One RESP array of bulk strings: *N, then $len and the bytes N times.
                parts = []
                for _ in range(int(header[1:])):
                    size = int((await reader.readline())[1:])
                    parts.append((await reader.readexactly(size + 2))[:-2].upper())
                if parts[0] == b"PUBLISH":
                    self.publishes += 1
                elif self.handshake and parts[0] == b"HELLO":  # RESP3: a map
                    writer.write(b"%2\r\n$6\r\nserver\r\n$5\r\nredis\r\n$5\r\nproto\r\n:3\r\n")
                elif self.handshake:
                    writer.write(b"+OK\r\n")  # CLIENT SETNAME, CLIENT SETINFO
                await writer.drain()


def _silent_publisher(silent: SilentRedis) -> Publisher:
    hub = RedisHub(f"redis://127.0.0.1:{silent.port}/0", client_name="cxw-test-silent")
    return Publisher(hub._publisher_connection, timeout=0.3)


async def test_a_silent_publishing_connection_times_out_and_is_replaced() -> None:
    async with SilentRedis() as silent:
        publisher = _silent_publisher(silent)
        started = time.monotonic()
        # Two publishes waiting on the same silent connection: both fail when the
        # first one's reply is overdue, and the connection is dropped.
        results = await asyncio.gather(
            publisher.publish("c", "a"), publisher.publish("c", "b"), return_exceptions=True
        )
        elapsed = time.monotonic() - started
        assert [type(r) for r in results] == [RedisTimeoutError, RedisTimeoutError], results
        assert "no reply to PUBLISH within 0.3 s" in str(results[0])
        assert 0.25 < elapsed < 2, elapsed
        assert publisher._conn is None and publisher._reader is None
        assert (silent.connections, silent.publishes) == (1, 2)
        # The next publish connects anew (and times out again: still silent).
        with pytest.raises(RedisTimeoutError, match="no reply to PUBLISH"):
            await publisher.publish("c", "c")
        assert (silent.connections, silent.publishes) == (2, 3)
        await publisher.close()


async def test_a_handshake_without_reply_times_out() -> None:
    # A server that accepts but never answers (frozen): connecting must not wait
    # forever, or every publish after it would queue behind it.
    async with SilentRedis(handshake=False) as silent:
        publisher = _silent_publisher(silent)
        results = await asyncio.wait_for(
            asyncio.gather(
                publisher.publish("c", "a"), publisher.publish("c", "b"), return_exceptions=True
            ),
            2,
        )
        assert [type(r) for r in results] == [RedisTimeoutError, RedisTimeoutError], results
        assert "connecting" in str(results[0])
        assert publisher._conn is None
        assert (silent.connections, silent.publishes) == (2, 0)  # each tried once


async def test_send_does_not_wait_for_the_reply_and_its_awaitable_retries_once() -> None:
    """The worker's turn ends when `send` returns: that is once the PUBLISH is
    written, whether or not Redis answers. Waiting for the reply comes after; a
    silent connection fails it there, after one more try on a new connection."""
    async with SilentRedis() as silent:
        hub = RedisHub(f"redis://127.0.0.1:{silent.port}/0", client_name="cxw-test-silent")
        hub._publisher = _silent_publisher(silent)
        waiting = await asyncio.wait_for(hub.send("w1", {"type": "event", "seq": 1}), 1)
        await eventually(lambda: silent.publishes == 1, "the PUBLISH written")
        with pytest.raises(HubUnavailable, match="no reply to PUBLISH"):
            await waiting
        assert (silent.connections, silent.publishes) == (2, 2)
        await hub._publisher.close()
