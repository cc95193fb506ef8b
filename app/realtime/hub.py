"""Fan-out of workshop messages to every connection, on this worker and others.

A hub has a local registry of listeners per workshop (the sockets served by this
process) and a backend that carries published messages to every process:

* `MemoryHub`: in-process, for one worker (the embedded default) and tests;
* `RedisHub` (app.realtime.redis_hub): Redis pub/sub, one subscriber per worker,
  for any number of workers or hosts.

Listeners are plain callables that must not block (they enqueue). When a backend
loses messages it cannot recover (a Redis reconnect), every listener receives
`RESYNC` and resynchronises its client from the event log.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)

Message = dict[str, Any]
Listener = Callable[[Message], None]
RESYNC: Message = {"type": "hub.resync"}


async def _carried() -> None:
    """What `Hub.send` gives back when the message is already delivered."""


class Hub:
    """Base: the local registry. Subclasses implement `publish`, `start`, `stop`."""

    def __init__(self) -> None:
        self._listeners: dict[str, set[Listener]] = defaultdict(set)
        self._after_resync: list[Callable[[], None]] = []

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def publish(self, workshop_id: str, message: Message) -> None:
        raise NotImplementedError

    async def send(self, workshop_id: str, message: Message) -> Awaitable[None]:
        """Publish in two steps: on return the message is on its way, in call order
        with every other `send` and `publish` of this process; the awaitable it gives
        completes once the backend has taken it (and raises as `publish` would).

        A workshop's commands take turns on a worker (LiveService): each releases its
        turn after this call and waits for the backend outside it. Here (and in
        `MemoryHub`) the whole publish happens at once.
        """
        await self.publish(workshop_id, message)
        return _carried()

    def subscribe(self, workshop_id: str, listener: Listener) -> None:
        self._listeners[workshop_id].add(listener)

    def unsubscribe(self, workshop_id: str, listener: Listener) -> None:
        listeners = self._listeners.get(workshop_id)
        if listeners is not None:
            listeners.discard(listener)
            if not listeners:
                del self._listeners[workshop_id]

    def local_workshops(self) -> list[str]:
        return list(self._listeners)

    def deliver(self, workshop_id: str, message: Message) -> None:
        """Hand a message to this process's listeners of one workshop."""
        for listener in list(self._listeners.get(workshop_id, ())):
            try:
                listener(message)
            except Exception:  # one broken connection must not stop the others
                log.exception("listener failed")

    def deliver_everywhere(self, message: Message) -> None:
        for workshop_id in list(self._listeners):
            self.deliver(workshop_id, message)

    def wire(self, workshop_id: str) -> tuple[str, str] | None:
        """Where other processes hear a workshop's messages, for one that publishes
        there itself (a Redis script): the channel and what goes before a message's
        JSON; None when only this process hears them."""
        return None

    def after_resync(self, callback: Callable[[], None]) -> None:
        """Call `callback` each time the backend has lost messages, after the
        listeners got `RESYNC`."""
        self._after_resync.append(callback)

    def resync(self) -> None:
        """Messages were lost: every listener, then every `after_resync` callback."""
        self.deliver_everywhere(RESYNC)
        for callback in self._after_resync:
            try:
                callback()
            except Exception:
                log.exception("after-resync callback failed")


class MemoryHub(Hub):
    """In-process fan-out: publish delivers straight to local listeners."""

    async def publish(self, workshop_id: str, message: Message) -> None:
        self.deliver(workshop_id, message)


def make_hub(redis_url: str | None) -> Hub:
    if not redis_url:
        return MemoryHub()
    from app.realtime.redis_hub import RedisHub

    return RedisHub(redis_url)
