"""This worker's live connections, grouped by workshop ("rooms").

A room subscribes to the hub while it has connections. Each hub message is rendered
once per audience present, then queued on every connection; each connection's
writer keeps its client's `seq` in order without holes or repeats: an event that
jumps ahead makes it fetch the missing ones from the event log first, and anything
at or below what the client has already seen is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any, Literal

from starlette.websockets import WebSocket, WebSocketState

from app.realtime.html import render_control, render_html
from app.realtime.hub import RESYNC, Hub
from app.realtime.messages import EPHEMERAL_EVENTS, Audience
from app.realtime.views import dumps, render_text
from app.services.live.context import Actor

log = logging.getLogger(__name__)

MAX_QUEUE = 2000  # a client this far behind is disconnected and resumes by seq
CLOSE_REMOVED = 4003  # application close code: removed from the workshop


@dataclass(eq=False)
class Connection:
    ws: WebSocket
    actor: Actor
    audience: Audience
    fmt: Literal["json", "html"] = "json"
    address: str = "unknown"
    last_seq: int = 0
    queue: asyncio.Queue[tuple[str, Any]] = field(default_factory=asyncio.Queue)
    closed: bool = False

    def put(self, kind: str, item: Any) -> None:
        if self.closed:
            return
        if self.queue.qsize() >= MAX_QUEUE:
            self.closed = True
            self.queue.put_nowait(("close", (1013, "too far behind; reconnect to resume")))
            return
        self.queue.put_nowait((kind, item))

    def control(self, message: dict[str, Any]) -> None:
        """A message for this client only (ack, error, snapshot, pong)."""
        if self.fmt == "html":
            if message.get("type") in ("error", "snapshot", "ack"):
                self.put("text", render_control(message))
            return
        self.put("text", dumps(message))


class Room:
    def __init__(
        self, workshop_id: str, anonymous: bool, seq: int, context: dict[str, Any]
    ) -> None:
        self.workshop_id = workshop_id
        self.context = context
        self.anonymous = anonymous
        self.last_seq = seq  # highest stored seq seen here (ephemeral events carry it)
        self.connections: set[Connection] = set()
        self.presence: dict[str, str] = {}

    def on_message(self, message: dict[str, Any]) -> None:
        if message is RESYNC or message.get("type") == RESYNC["type"]:
            for conn in self.connections:
                conn.put("resync", None)
            return
        type_ = message["type"]
        if type_ == "anonymity.changed":
            self.anonymous = bool(message["anonymous"])
        elif type_ == "participant.presence":
            self.presence[message["participant_id"]] = message["status"]
        rendered: dict[tuple[Audience, str], str] = {}
        ephemeral = type_ in EPHEMERAL_EVENTS
        # An ephemeral event names a stored seq too (a join over HTTP is heard only so).
        self.last_seq = max(self.last_seq, int(message["seq"]))
        for conn in list(self.connections):
            key = (conn.audience, conn.fmt)
            text = rendered.get(key)
            if text is None:
                text = rendered[key] = self.render(message, conn)
            conn.put("event", (message["seq"], ephemeral, text, message))

    def render(self, message: dict[str, Any], conn: Connection) -> str:
        if conn.fmt == "html":
            return render_html(message, conn.audience, self.anonymous, self.context)
        return render_text(message, conn.audience, self.anonymous)


class Rooms:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.rooms: dict[str, Room] = {}
        self.per_address: dict[str, int] = {}

    def join(self, conn: Connection, anonymous: bool, seq: int, context: dict[str, Any]) -> Room:
        wid = conn.actor.workshop_id
        room = self.rooms.get(wid)
        if room is None:
            room = self.rooms[wid] = Room(wid, anonymous, seq, context)
            self.hub.subscribe(wid, room.on_message)
        room.connections.add(conn)
        self.per_address[conn.address] = self.per_address.get(conn.address, 0) + 1
        return room

    def leave(self, conn: Connection) -> Room | None:
        wid = conn.actor.workshop_id
        room = self.rooms.get(wid)
        if room is None:
            return None
        if conn in room.connections:
            left = self.per_address.get(conn.address, 1) - 1
            if left > 0:
                self.per_address[conn.address] = left
            else:
                self.per_address.pop(conn.address, None)
        room.connections.discard(conn)
        if not room.connections:
            self.hub.unsubscribe(wid, room.on_message)
            del self.rooms[wid]
        return room

    def render_for(self, conn: Connection, message: dict[str, Any]) -> str:
        room = self.rooms.get(conn.actor.workshop_id)
        if room is None:
            room = Room(conn.actor.workshop_id, True, 0, {})  # safest: anonymous
        return room.render(message, conn)

    def count(self) -> int:
        return sum(len(r.connections) for r in self.rooms.values())


async def close_quietly(ws: WebSocket, code: int, reason: str) -> None:
    if ws.application_state == WebSocketState.CONNECTED:
        with contextlib.suppress(Exception):
            await ws.close(code, reason)
