"""Presence across sockets and workers (app.realtime.presence).

The Redis board runs against a real Redis (TEST_REDIS_URL), each test under its own
random key prefix; without Redis those tests skip, or fail when CI=true. Two boards
with one prefix are two workers.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from app.realtime.hub import Hub, MemoryHub
from app.realtime.presence import (
    WORKER_TTL_S,
    MemoryBoard,
    Presence,
    RedisBoard,
    presence_event,
)
from app.realtime.redis_hub import RedisHub
from app.realtime.rooms import Room, Rooms
from tests.conftest import REDIS_URL

MakeBoard = Callable[[], Awaitable[RedisBoard]]
ANN, BO = "ann", "bo"


async def _nothing(_gone: bool) -> None:
    return None


@pytest.fixture
async def boards(redis_url: str) -> AsyncIterator[tuple[MakeBoard, Redis, str]]:
    """Start RedisBoards ("workers") sharing one random key prefix."""
    prefix = f"cxw-test:{uuid.uuid4().hex}:"
    started: list[RedisBoard] = []
    admin = Redis.from_url(redis_url, decode_responses=True)

    async def make() -> RedisBoard:
        board = RedisBoard(redis_url, prefix=prefix)
        await board.start(_nothing)
        started.append(board)
        return board

    try:
        yield make, admin, prefix
    finally:
        for board in started:
            await board.stop()
        async for key in admin.scan_iter(match=prefix + "*"):
            await admin.delete(key)
        await admin.aclose()


def _fast_worker(prefix: str) -> tuple[MemoryHub, RedisBoard, Presence]:
    """A worker's hub, board (renewed every 50 ms) and presence, not started."""
    hub = MemoryHub()
    rooms = Rooms(hub)
    board = RedisBoard(REDIS_URL, prefix=prefix, heartbeat=0.05)
    rooms.presence = Presence(board, hub, rooms)
    return hub, board, rooms.presence


def _hear_until(
    hub: MemoryHub, done: Callable[[list[dict[str, Any]]], bool]
) -> tuple[list[dict[str, Any]], asyncio.Event]:
    """What the room "w" hears, and an event set once `done(heard)`."""
    heard: list[dict[str, Any]] = []
    event = asyncio.Event()

    def hear(message: dict[str, Any]) -> None:
        heard.append(message)
        if done(heard):
            event.set()

    hub.subscribe("w", hear)
    return heard, event


def _presence(hub: Hub, workshop_id: str) -> list[dict[str, Any]]:
    heard: list[dict[str, Any]] = []
    hub.subscribe(workshop_id, heard.append)
    return heard


async def test_one_worker_says_online_while_any_socket_is_online() -> None:
    hub = MemoryHub()
    rooms = Rooms(hub)
    heard = _presence(hub, "w")
    presence = rooms.presence
    await presence.change("w", ANN, 1, "online", 3)  # her laptop
    await presence.change("w", ANN, 2, "online", 3)  # her phone
    await presence.change("w", ANN, 2, "away", 3)  # the phone goes to sleep
    await presence.change("w", ANN, 1, None, 3)  # the laptop closes
    await presence.change("w", ANN, 2, "online", 4)
    await presence.change("w", ANN, 2, None, 4)
    assert [(e["status"], e["seq"]) for e in heard] == [
        ("online", 3),
        ("online", 3),
        ("online", 3),  # the laptop is still online
        ("away", 3),
        ("online", 4),
        ("offline", 4),
    ]
    versions = [e["version"] for e in heard]
    assert versions == sorted(versions) and len(set(versions)) == len(versions)
    assert await presence.read("w") == {}
    assert await MemoryBoard().read("w") == {}  # nothing is kept for those who left


async def test_a_room_applies_no_older_word_than_it_has() -> None:
    room = Room("w", False, 0, {})

    def event(status: str, version: int) -> dict[str, Any]:
        return {"type": "participant.presence", "seq": 0, "actor": ANN, "participant_id": ANN} | {
            "status": status,
            "version": version,
        }

    room.on_message(event("online", 20))
    assert room.presence == {ANN: "online"}
    room.flush()
    room.on_message(event("offline", 10))  # sent earlier by another worker
    assert room.presence == {ANN: "online"}
    assert not room.holding()  # the old one is not sent on
    room.on_message(event("away", 0))  # the board was out of reach: applied
    assert room.presence == {ANN: "away"} and room.holding()
    room.on_message(event("offline", 30))
    assert room.presence == {ANN: "offline"}
    room.close()


async def test_workers_share_one_answer(boards: tuple[MakeBoard, Redis, str]) -> None:
    make, _admin, _prefix = boards
    a, b = await make(), await make()
    seen = [await a.put("w", ANN, "online")]
    seen.append(await b.put("w", ANN, "away"))  # her phone, on the other worker
    assert seen[-1][0] == "online"
    seen.append(await a.put("w", ANN, "offline"))  # the laptop closes
    assert seen[-1][0] == "away"
    seen.append(await b.put("w", BO, "online"))
    assert await a.read("w") == await b.read("w")
    assert {pid: s for pid, (s, _v) in (await a.read("w")).items()} == {ANN: "away", BO: "online"}
    seen.append(await b.put("w", ANN, "offline"))
    assert seen[-1][0] == "offline"
    assert (await a.read("w"))[ANN] == seen[-1]
    versions = [v for _s, v in seen]
    assert versions == sorted(versions) and len(set(versions)) == len(versions)
    assert await a.read("nobody-here") == {}


async def test_a_dead_workers_word_stops_counting(boards: tuple[MakeBoard, Redis, str]) -> None:
    make, admin, prefix = boards
    a, b = await make(), await make()
    await a.put("w", ANN, "online")
    assert await admin.ttl(prefix + "worker:" + a.worker) == WORKER_TTL_S
    await admin.delete(prefix + "worker:" + a.worker)  # A died 30 s ago
    assert (await b.read("w"))[ANN][0] == "offline"
    assert (await b.put("w", ANN, "away"))[0] == "away"  # and its entry is dropped
    entry = await admin.hget(prefix + "presence:w", ANN)
    assert isinstance(entry, str) and b.worker in entry and a.worker not in entry


async def test_a_worker_rewrites_its_word_when_redis_lost_it(
    boards: tuple[MakeBoard, Redis, str],
) -> None:
    make, admin, prefix = boards
    hub, board, presence = _fast_worker(prefix)
    await presence.start()
    try:
        heard, again = _hear_until(hub, lambda heard: len(heard) > 1)
        await presence.change("w", ANN, 1, "online", 5)
        await admin.delete(prefix + "worker:" + board.worker, prefix + "presence:w")  # a restart
        await asyncio.wait_for(again.wait(), 5)
        assert heard[1]["status"] == "online" and heard[1]["version"] > heard[0]["version"]
        reader = await make()
        assert (await reader.read("w"))[ANN] == ("online", heard[1]["version"])
    finally:
        await presence.stop()


async def test_a_page_rendered_without_a_room_here_reads_the_board(
    boards: tuple[MakeBoard, Redis, str],
) -> None:
    make, _admin, _prefix = boards
    elsewhere = await make()
    await elsewhere.put("w", ANN, "online")
    hub = MemoryHub()
    rooms = Rooms(hub, await make())
    assert await rooms.presence.read("w") == {ANN: "online"}
    room = Room("w", False, 0, {})
    rooms.rooms["w"] = room
    await rooms.presence.fill(room)  # a room new here starts from the board
    assert room.presence == {ANN: "online"}
    await elsewhere.put("w", ANN, "offline")
    # Once filled, the room answers (it hears every change from then on).
    assert await rooms.presence.read("w") == {ANN: "online"}
    room.close()


async def test_a_write_that_failed_is_made_at_the_next_renewal(
    boards: tuple[MakeBoard, Redis, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    make, _admin, prefix = boards
    hub, board, presence = _fast_worker(prefix)
    put = board.put

    async def away(*_args: Any) -> Any:
        raise RedisConnectionError("Redis is away")

    monkeypatch.setattr(board, "put", away)
    heard, written = _hear_until(hub, lambda heard: bool(heard[-1]["version"]))
    await presence.change("w", ANN, 1, "online", 5)
    assert [(m["status"], m["version"]) for m in heard] == [("online", 0)]  # her worker's word
    monkeypatch.setattr(board, "put", put)  # Redis is back
    await presence.start()
    try:
        await asyncio.wait_for(written.wait(), 5)
        reader = await make()
        assert (await reader.read("w"))[ANN] == ("online", heard[-1]["version"])
    finally:
        await presence.stop()


async def test_one_workers_words_on_a_participant_keep_their_order(
    boards: tuple[MakeBoard, Redis, str],
) -> None:
    make, _admin, prefix = boards
    hub, _board, presence = _fast_worker(prefix)
    heard, _ = _hear_until(hub, lambda _heard: False)
    await presence.start()
    try:
        # Her sockets open and close at once, as in a reconnect storm; the last word,
        # the board and every version agree with what her sockets say at the end.
        changes = (
            presence.change("w", ANN, i % 3, "online" if i % 2 else None, 1) for i in range(30)
        )
        await asyncio.gather(*changes)
        assert presence.here("w", ANN) == "online"  # sockets 0 and 2 said online last
        assert heard[-1]["status"] == "online"
        assert (await (await make()).read("w"))[ANN] == ("online", heard[-1]["version"])
        versions = [m["version"] for m in heard]
        assert versions == sorted(versions) and len(set(versions)) == 30
        assert presence._locks == {}
    finally:
        await presence.stop()


async def test_a_participants_writes_never_overlap(monkeypatch: pytest.MonkeyPatch) -> None:
    """One worker writes one participant's word once at a time, however the calls
    arrive (otherwise an older word could reach the board last)."""
    rooms = Rooms(MemoryHub())
    presence = rooms.presence
    put = presence.board.put
    running = most = 0

    async def slow_put(*args: Any) -> Any:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.002)
        running -= 1
        return await put(*args)

    monkeypatch.setattr(presence.board, "put", slow_put)
    calls = []
    for i in range(40):
        calls.append(asyncio.create_task(presence.change("w", ANN, i, "online", 1)))
        await asyncio.sleep(0.0015 * (i % 3))  # arrivals spread over the writes
    await asyncio.gather(*calls)
    assert most == 1
    assert presence._locks == {}


async def test_the_boards_script_publishes_the_event_to_the_other_workers(
    boards: tuple[MakeBoard, Redis, str], redis_url: str
) -> None:
    """With the hub in Redis too, a change is one script call that also publishes the
    event: the other worker hears the same event as this one, once each, and this
    worker's hub publishes nothing for it."""
    make, _admin, prefix = boards
    hubs = [RedisHub(redis_url, channel_prefix=prefix + "ws:") for _ in range(2)]
    for hub in hubs:
        await hub.start()
    try:
        a, b = await make(), await make()
        presence_a = Presence(a, hubs[0], Rooms(hubs[0]))
        presence_b = Presence(b, hubs[1], Rooms(hubs[1]))
        heard_a, heard_b = _presence(hubs[0], "w"), _presence(hubs[1], "w")

        async def no_publish(*_args: Any) -> Any:
            raise AssertionError("published through the hub")

        hubs[0].send = no_publish  # type: ignore[method-assign, assignment]
        await presence_a.change("w", ANN, 1, "online", 7)
        await presence_b.change("w", ANN, 2, "away", 7)  # her phone, on B (B's hub publishes)
        await presence_a.change("w", ANN, 1, None, 8)  # the laptop closes
        for _ in range(200):
            if len(heard_a) == len(heard_b) == 3:
                break
            await asyncio.sleep(0.01)
        assert heard_a == heard_b
        assert [(e["status"], e["seq"], e["participant_id"]) for e in heard_a] == [
            ("online", 7, ANN),
            ("online", 7, ANN),
            ("away", 8, ANN),
        ]
        assert all(e["version"] > 0 for e in heard_a)
    finally:
        for hub in hubs:
            await hub.stop()


async def test_rooms_show_a_dead_workers_participants_offline_after_a_renewal(
    boards: tuple[MakeBoard, Redis, str],
) -> None:
    """Ann is online through worker B, which dies; once B's key has expired, worker
    A's next renewal sets A's room right. Bo, whose worker is alive, stays online."""
    make, admin, prefix = boards
    hub, _board, presence = _fast_worker(prefix)
    room = Room("w", False, 0, {})
    presence.rooms.rooms["w"] = room
    hub.subscribe("w", room.on_message)
    heard, corrected = _hear_until(hub, lambda heard: any(m["status"] == "offline" for m in heard))
    dying = await make()
    await presence.change("w", BO, 1, "online", 3)  # Bo's socket is on A
    seen = await dying.put("w", ANN, "online")  # Ann's socket is on B
    room.on_message(presence_event(ANN, *seen, 3))  # as B's event reached A
    await presence.start()
    try:
        await asyncio.sleep(0.2)  # renewals while B lives: nothing changes
        assert room.presence == {ANN: "online", BO: "online"}
        assert not any(m["participant_id"] == ANN for m in heard)
        await admin.delete(prefix + "worker:" + dying.worker)  # B died 30 s ago
        await asyncio.wait_for(corrected.wait(), 5)
        assert room.presence == {ANN: "offline", BO: "online"}
        assert [(m["participant_id"], m["status"]) for m in heard[1:]] == [(ANN, "offline")]
    finally:
        await presence.stop()
        room.close()
