"""MemoryHub and the shared local registry of `Hub`."""

from __future__ import annotations

import logging

import pytest

from app.realtime.hub import RESYNC, MemoryHub, Message, make_hub


async def test_publish_reaches_subscribers_of_that_workshop_only() -> None:
    hub = MemoryHub()
    a: list[Message] = []
    b: list[Message] = []
    hub.subscribe("w1", a.append)
    hub.subscribe("w2", b.append)

    await hub.publish("w1", {"type": "x", "seq": 1})
    await hub.publish("w1", {"type": "x", "seq": 2})

    assert a == [{"type": "x", "seq": 1}, {"type": "x", "seq": 2}]
    assert b == []


async def test_unsubscribed_listener_gets_nothing_and_registry_is_pruned() -> None:
    hub = MemoryHub()
    got: list[Message] = []
    other: list[Message] = []
    hub.subscribe("w1", got.append)
    hub.subscribe("w1", other.append)
    hub.unsubscribe("w1", got.append)

    await hub.publish("w1", {"type": "x"})

    assert got == []
    assert other == [{"type": "x"}]
    hub.unsubscribe("w1", other.append)
    assert hub.local_workshops() == []
    hub.unsubscribe("never-subscribed", other.append)  # harmless


async def test_failing_listener_does_not_stop_the_others(caplog: pytest.LogCaptureFixture) -> None:
    hub = MemoryHub()
    got: list[Message] = []

    def broken(message: Message) -> None:
        raise RuntimeError("socket gone")

    hub.subscribe("w1", broken)
    hub.subscribe("w1", got.append)
    with caplog.at_level(logging.ERROR, logger="app.realtime.hub"):
        await hub.publish("w1", {"type": "x"})

    assert got == [{"type": "x"}]
    assert "listener failed" in caplog.text


async def test_deliver_everywhere_reaches_every_workshop() -> None:
    hub = MemoryHub()
    a: list[Message] = []
    b: list[Message] = []
    hub.subscribe("w1", a.append)
    hub.subscribe("w2", b.append)

    hub.deliver_everywhere(RESYNC)

    assert a == [RESYNC]
    assert b == [RESYNC]
    assert sorted(hub.local_workshops()) == ["w1", "w2"]


async def test_listener_may_unsubscribe_while_being_delivered_to() -> None:
    hub = MemoryHub()
    got: list[Message] = []

    def once(message: Message) -> None:
        got.append(message)
        hub.unsubscribe("w1", once)

    hub.subscribe("w1", once)
    await hub.publish("w1", {"n": 1})
    await hub.publish("w1", {"n": 2})
    assert got == [{"n": 1}]


async def test_make_hub_without_redis_is_in_memory() -> None:
    assert isinstance(make_hub(None), MemoryHub)
    assert isinstance(make_hub(""), MemoryHub)
