"""The WebSocket endpoint `/ws/workshops/{id}`: authenticate, then read and write.

Handshake (before accepting): a participant token or a facilitator's token/session,
and an allowed `Origin`. Then the server sends `hello`, then either the events the
client missed since `last_seq` or a `snapshot`, then live events in `seq` order.
Commands are read one at a time: parsed against the wire schema, executed by the
live service, answered with `ack` (after commit) or `error` (to this client only).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any, Literal, NamedTuple

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import ValidationError
from sqlalchemy import bindparam
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import defer
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.db.engine import begin_consistent_read
from app.db.models import Workshop
from app.domain.definitions import Definition, Phase
from app.realtime import messages as m
from app.realtime.html import html_context, render_control
from app.realtime.rooms import CLOSE_REMOVED, Connection, Frame, Room, Rooms, close_quietly
from app.services.identity import (
    active_participant,
    participant_claim,
    participant_cookie,
    projector_allowed,
    projector_cookie,
)
from app.services.live.context import Actor, Rejected
from app.services.live.engine import LiveService
from app.services.live.snapshot import SharedSnapshot, build_shared, events_since
from app.services.security import ACCESS, SESSION, InvalidToken, TokenCodec, is_participant_token

log = logging.getLogger(__name__)
router = APIRouter()

MAX_MESSAGE_BYTES = 8 * 1024  # larger commands get an error; frames over 64 KiB close (1009)
RATE_PER_SECOND = 20.0
RATE_BURST = 40
STRIKE_MEMORY_S = 10.0  # strikes further apart than this start the count again
MAX_STRIKES = 60  # rate-limited messages tolerated before the socket is closed (1008)
# A whole office behind one NAT address must fit; a script opening thousands must not.
MAX_CONNECTIONS_PER_ADDRESS = 300
RESUME_LIMIT = 1000  # more missed events than this: send a snapshot instead
CLOSE_POLICY = 1008


class TokenBucket:
    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, float(burst)
        self.tokens, self.stamp = float(burst), time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


# The workshop without its definition snapshot (12 KB of JSON to decode per socket):
# that comes parsed from the definition cache.
_WORKSHOP_FOR_SOCKET = (
    select(Workshop)
    .options(defer(Workshop.definition))  # type: ignore[arg-type]
    .where(col(Workshop.id) == bindparam("wid"))
)


class Door(NamedTuple):
    """What the handshake needs of the database: the workshop row's few columns and
    whether the participant claimed (if any) is in it and not removed."""

    seq: int
    anonymous: bool
    facilitator_id: str
    participant_ok: bool


Admitted = tuple[Actor, Door, tuple[Definition, tuple[Phase, ...]], bool]


async def _door(
    ws: WebSocket, workshop_id: str, participant_id: str | None
) -> tuple[Door, tuple[Definition, tuple[Phase, ...]]] | None:
    """The workshop's door and parsed definition; None if there is no such workshop.

    On PostgreSQL with the definition cached (any socket after a workshop's first on
    this worker) one round trip on the live lane (`PgLane.admit`); else, or if the
    lane cannot read it, the usual session."""
    live: LiveService = ws.app.state.live
    lane, definition = live.pg_lane, live.cache.peek(workshop_id)
    if lane is not None and definition is not None:
        row = await lane.admit(workshop_id, participant_id)
        if row is not None:
            if row["seq"] is None:
                return None
            door = Door(
                row["seq"], row["anonymous"], row["facilitator_id"], bool(row["participant_ok"])
            )
            return door, definition
    async with ws.app.state.sessionmaker() as session:
        params = {"wid": workshop_id}
        workshop = (await session.exec(_WORKSHOP_FOR_SOCKET, params=params)).first()
        if workshop is None:
            return None
        ok = participant_id is not None and (
            await active_participant(session, workshop_id, participant_id) is not None
        )
        door = Door(workshop.seq, workshop.anonymous, workshop.facilitator_id, ok)
        return door, await live.definition(session, workshop_id)


async def _authenticate(ws: WebSocket, workshop_id: str) -> Admitted | None:
    """Who is connecting, the workshop's door, its parsed definition, and whether
    only as the projector; None to refuse."""
    state = ws.app.state
    codec: TokenCodec = state.codec
    settings = state.settings
    token = ws.query_params.get("token") or ""
    auth = ws.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        token = auth[7:]
    participant_token = token or ws.cookies.get(participant_cookie(workshop_id), "")
    if participant_token and is_participant_token(codec, participant_token):
        # A participant's token (maybe expired, or another workshop's) decides alone.
        claimed = participant_claim(codec, settings, workshop_id, participant_token)
        if claimed is None:
            return None
        found = await _door(ws, workshop_id, claimed)
        if found is None or not found[0].participant_ok:
            return None
        actor = Actor("participant", workshop_id, participant_id=claimed)
        return actor, found[0], found[1], False
    found = await _door(ws, workshop_id, None)
    if found is None:
        return None
    door, definition = found
    candidates = []
    if token:
        candidates.append((ACCESS, token, settings.access_token_hours * 3600))
    cookie = ws.cookies.get("cxw_session")
    if cookie:
        candidates.append((SESSION, cookie, settings.session_hours * 3600))
    for kind, value, max_age in candidates:
        with contextlib.suppress(InvalidToken):
            payload = codec.loads(kind, value, max_age_s=max_age)
            if payload.get("f") == door.facilitator_id:
                actor = Actor("facilitator", workshop_id, facilitator_id=door.facilitator_id)
                return actor, door, definition, False
    # A projector link (a shared screen): the projector audience, read-only.
    for value in (token, ws.cookies.get(projector_cookie(workshop_id), "")):
        if projector_allowed(codec, settings, workshop_id, value):
            actor = Actor("facilitator", workshop_id, facilitator_id=door.facilitator_id)
            return actor, door, definition, True
    return None


def _origin_allowed(ws: WebSocket) -> bool:
    origin = ws.headers.get("origin")
    # Non-browser clients (scripts, the benchmark) send no Origin; browsers always do.
    return origin is None or origin in ws.app.state.settings.allowed_origins


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors()[:3]:
        loc = ".".join(str(p) for p in item["loc"])
        if item["type"] == "union_tag_invalid":
            parts.append(f"unknown command type {item['input'].get('type')!r}")
        elif item["type"] == "union_tag_not_found":
            parts.append("the message has no 'type'")
        elif item["type"] == "json_invalid":
            parts.append("the message is not valid JSON")
        else:
            parts.append(f"{loc}: {item['msg']}" if loc else item["msg"])
    return "; ".join(parts)


def _cid_of(text: str) -> str | None:
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):  # deep nesting fits in 8 KiB
        return None
    cid = value.get("cid") if isinstance(value, dict) else None
    if not isinstance(cid, str) or len(cid) > 64:
        return None
    try:
        cid.encode()  # a lone surrogate ("\ud800") could not be sent back in a text frame
    except UnicodeEncodeError:
        return None
    return cid


@router.websocket("/ws/workshops/{workshop_id}")
async def workshop_socket(ws: WebSocket, workshop_id: str) -> None:
    if not _origin_allowed(ws):
        await ws.close(CLOSE_POLICY, "origin not allowed")
        return
    address = ws.client.host if ws.client else "unknown"
    rooms_: Rooms = ws.app.state.rooms
    if rooms_.per_address.get(address, 0) >= MAX_CONNECTIONS_PER_ADDRESS:
        await ws.close(CLOSE_POLICY, "too many connections from this address")
        return
    found = await _authenticate(ws, workshop_id)
    if found is None:
        await ws.close(CLOSE_POLICY, "not allowed in this workshop")
        return
    actor, door, (definition, _phases), projector_only = found
    audience: m.Audience = "participant"
    if actor.is_facilitator:
        view = ws.query_params.get("view")
        audience = "projector" if projector_only or view == "projector" else "facilitator"
    try:
        last_seq = int(ws.query_params.get("last_seq", "-1"))
    except ValueError:
        last_seq = -1
    await ws.accept()
    rooms: Rooms = ws.app.state.rooms
    live: LiveService = ws.app.state.live
    fmt: Literal["json", "html"] = "html" if ws.query_params.get("format") == "html" else "json"
    conn = Connection(ws=ws, actor=actor, audience=audience, fmt=fmt, address=address)
    seq = door.seq
    room = rooms.join(conn, door.anonymous, seq, html_context(definition))
    # This coroutine lives as long as the socket: keep no definition in it.
    del found, door, definition, _phases
    writer = asyncio.create_task(_writer(conn, rooms, live, last_seq, seq))
    presence = rooms.presence
    pid = actor.participant_id
    try:
        if pid:
            # Presence carries the newest seq known here, so a client that has not seen
            # an event up to it (a publish lost in transit) fetches it first.
            await presence.change(workshop_id, pid, id(conn), "online", max(room.last_seq, seq))
        await _reader(conn, live, room)
        # The reader gave up on this client (a policy close is queued): let the writer
        # send what is queued before it, then the close frame.
        await asyncio.wait({writer}, timeout=5)
    except WebSocketDisconnect:
        pass
    finally:
        conn.closed = True
        rooms.leave(conn)
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await writer
        if pid:
            await presence.change(workshop_id, pid, id(conn), None, room.last_seq)


async def _reader(conn: Connection, live: LiveService, room: Room) -> None:
    ws = conn.ws
    bucket = TokenBucket(RATE_PER_SECOND, RATE_BURST)
    strikes = 0
    last_strike = 0.0
    while not conn.closed:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000))
        text = message.get("text")
        if text is None:
            conn.control(
                m.ErrorMessage(code="binary", message="send JSON text frames").model_dump()
            )
            continue
        if len(text.encode()) > MAX_MESSAGE_BYTES:
            conn.control(
                m.ErrorMessage(
                    cid=None,
                    code="too_large",
                    message=f"messages are limited to {MAX_MESSAGE_BYTES} bytes",
                ).model_dump()
            )
            continue
        if not bucket.take():
            # Strikes count floods, not a long life: a quiet spell forgives them.
            now = time.monotonic()
            if now - last_strike > STRIKE_MEMORY_S:
                strikes = 0
            last_strike = now
            strikes += 1
            if strikes > MAX_STRIKES:
                conn.after_events("close", (CLOSE_POLICY, "too many messages"))
                return
            conn.control(
                m.ErrorMessage(
                    cid=_cid_of(text), code="rate_limited", message="too many messages; slow down"
                ).model_dump()
            )
            continue
        try:
            command = _parse(text, conn.fmt)
        except ValidationError as exc:
            conn.control(
                m.ErrorMessage(
                    cid=_cid_of(text), code="invalid_message", message=_describe(exc)
                ).model_dump()
            )
            continue
        await _execute(conn, live, command, room)


def _parse(text: str, fmt: str) -> Any:
    if fmt == "json":
        return m.COMMANDS.validate_json(text)
    # htmx's ws extension sends form fields as strings plus a HEADERS object: take
    # the fields, and let "0.5" be a number and "true" a boolean for these clients.
    try:
        data = json.loads(text)
    except ValueError:
        return m.COMMANDS.validate_json(text)  # raises the usual "not valid JSON"
    if isinstance(data, dict):
        data.pop("HEADERS", None)
    return m.COMMANDS.validate_python(data, strict=False)


async def _execute(conn: Connection, live: LiveService, command: Any, room: Room) -> None:
    if isinstance(command, m.Ping):
        conn.control(m.Pong(cid=command.cid, seq=conn.last_seq).model_dump())
        return
    if conn.audience == "projector" and not isinstance(command, m.Sync):
        conn.control(
            m.ErrorMessage(
                cid=command.cid, code="read_only", message="the projector view only shows"
            ).model_dump()
        )
        return
    if isinstance(command, m.Sync):
        conn.after_events("resync", command.last_seq)
        conn.control(m.Ack(cid=command.cid, seq=None).model_dump())  # after the catch-up
        return
    if isinstance(command, m.SetPresence):
        if conn.actor.participant_id:
            presence = conn.ws.app.state.rooms.presence
            await presence.change(
                room.workshop_id, conn.actor.participant_id, id(conn), command.status, conn.last_seq
            )
        conn.control(m.Ack(cid=command.cid, seq=None).model_dump())
        return
    if isinstance(command, m.DragNote) and await _drag_admitted(conn, live, room, command):
        # A drag preview the room's memory vouches for: published, no database.
        await live.publish_drag(conn.actor, command, room.last_seq)
        conn.control(m.Ack(cid=command.cid, seq=None).model_dump())
        return
    try:
        outcome = await live.handle(conn.actor, command)
    except Rejected as exc:
        conn.control(
            m.ErrorMessage(cid=command.cid, code=exc.code, message=exc.message).model_dump()
        )
        if exc.code == "removed":
            conn.after_events("close", (CLOSE_REMOVED, "removed from the workshop"))
        return
    conn.control(m.Ack(cid=command.cid, seq=outcome.seq, result=outcome.result).model_dump())


async def _drag_admitted(
    conn: Connection, live: LiveService, room: Room, command: m.DragNote
) -> bool:
    """Whether the room's memory admits this drag; when it does not (or cannot), the
    caller checks against the database, which gives the exact refusal."""
    if room.waiting():
        # An event before one already heard is still on its way (from another
        # worker): what the room knows may be behind the database's order.
        return False
    gate = room.gate
    if not gate.loaded:

        def kinds(workshop: Workshop) -> list[str]:
            return [phase.kind.value for phase in live.cache.get(workshop)[1]]

        try:
            async with live.sessionmaker() as session:
                await gate.load(session, room.workshop_id, kinds)
        except (OperationalError, DBAPIError, OSError):
            return False
    return gate.admits(conn.actor.participant_id, command.note_id)


async def _send_missed(
    conn: Connection,
    rooms: Rooms,
    session: AsyncSession,
    live: LiveService,
    since: int,
    need: int | None,
) -> None:
    """Bring the client from `since` to now: the missed events, or a snapshot.
    `need`: the seq it must have at least (an ephemeral event or the workshop row
    names it); None to read the log whatever the room remembers."""
    room = rooms.rooms.get(conn.actor.workshop_id)
    kept = None
    if room is not None and need is not None:
        kept = room.replay(since, need, RESUME_LIMIT)
        if kept is None and 0 <= since < need:
            # A room that lacks them (just reopened, say, after everyone dropped): one
            # read of the log for everyone who resumes at once, then from the ring.
            await _fill_ring(room, live, since)
            kept = room.replay(since, need, RESUME_LIMIT)
    if kept is not None:
        await _send_events(conn, rooms, kept, since)
        return
    await begin_consistent_read(session)
    workshop = await session.get(Workshop, conn.actor.workshop_id)
    assert workshop is not None
    # A `since` beyond anything stored (stale or bogus) gets a snapshot: trusting it
    # would make this client drop every event up to it (and a huge one overflows SQL).
    missed = (
        await events_since(session, conn.actor.workshop_id, since, RESUME_LIMIT)
        if 0 <= since <= workshop.seq
        else None
    )
    if missed is None and conn.fmt == "html" and since < 0:
        # A page renders the current state itself: it only needs what follows.
        conn.last_seq = workshop.seq
        return
    if missed is None:
        if conn.fmt == "html":
            # A page is only told to reload at this seq: it renders the state itself.
            await conn.ws.send_text(render_control({"type": "snapshot", "seq": workshop.seq}))
        else:
            room = rooms.rooms.get(conn.actor.workshop_id)
            shared = await _shared_snapshot(room, session, live, workshop, conn.audience)
            if room is not None:
                await rooms.presence.fill(room)  # a room new here reads the board first
            presence = room.presence if room else {}
            await conn.ws.send_text(shared.text(conn.actor.participant_id, presence))
        conn.last_seq = workshop.seq
        return
    await _send_events(conn, rooms, missed, since)


async def _fill_ring(room: Room, live: LiveService, since: int) -> None:
    """Read the stored events after `since` into the room's ring (`Room.seed`).

    Single-flight: whoever asks while a read is in flight waits for it instead of
    reading too (a reconnect storm would otherwise read the log once per socket). A
    read that covers the waiter is served from the ring; one that does not, or that
    failed, leaves the waiter to read the log itself, as before.
    """
    pending = room.filling
    if pending is not None:
        await asyncio.shield(pending)
        return
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    room.filling = future
    try:
        async with live.sessionmaker() as session:
            await begin_consistent_read(session)
            missed = await events_since(session, room.workshop_id, since, RESUME_LIMIT)
        if missed is not None:
            room.seed(missed)
    except (OperationalError, DBAPIError, OSError):
        log.warning("could not read the log for workshop %s", room.workshop_id)
    finally:
        room.filling = None
        future.set_result(None)


class _Abandoned(Exception):
    """The shared snapshot build that others waited for did not finish."""


async def _shared_snapshot(
    room: Room | None,
    session: AsyncSession,
    live: LiveService,
    workshop: Workshop,
    audience: m.Audience,
) -> SharedSnapshot:
    """The audience's snapshot at the workshop's seq as read in `session`: built once
    per room, seq and audience, and shared by everyone joining at that seq (those who
    arrive while it is being built wait for it). The rows at one seq are the same in
    any transaction that reads that seq, so another client's build serves this one."""
    definition, phases = live.cache.get(workshop)
    seq = workshop.seq
    if room is None:
        return await build_shared(session, workshop, definition, phases, audience)
    held = room.snapshots.get(audience)
    if held is not None and held[0] == seq:
        with contextlib.suppress(_Abandoned):
            # shield: a waiter that goes away must not cancel the build for the others
            return await asyncio.shield(held[1])
        held = room.snapshots.get(audience)
    if held is not None and held[0] >= seq:
        # An older moment than the one kept (or a retry after a failed build): not kept.
        return await build_shared(session, workshop, definition, phases, audience)
    future: asyncio.Future[SharedSnapshot] = asyncio.get_running_loop().create_future()
    room.snapshots[audience] = (seq, future)
    try:
        shared = await build_shared(session, workshop, definition, phases, audience)
    except BaseException:
        if room.snapshots.get(audience) == (seq, future):
            del room.snapshots[audience]
        future.set_exception(_Abandoned())
        future.exception()  # retrieved: nobody may be waiting
        raise
    future.set_result(shared)
    return shared


async def _send_events(
    conn: Connection, rooms: Rooms, events: list[dict[str, Any]], since: int
) -> None:
    for event in events:
        await conn.ws.send_text(rooms.render_for(conn, event))
        conn.last_seq = event["seq"]
        _stop_if_removed(conn, event)
    if since > conn.last_seq:
        conn.last_seq = since


async def _writer(
    conn: Connection, rooms: Rooms, live: LiveService, last_seq: int, known: int
) -> None:
    """`known`: the workshop's seq when the client was let in (a resume reaches it)."""
    ws = conn.ws
    hello = {
        "type": "hello",
        "workshop_id": conn.actor.workshop_id,
        "role": conn.actor.role,
        "audience": conn.audience,
        "participant_id": conn.actor.participant_id,
        "limits": {
            "max_message_bytes": MAX_MESSAGE_BYTES,
            "rate_per_second": RATE_PER_SECOND,
            "burst": RATE_BURST,
        },
    }
    try:
        if conn.fmt == "json":
            await ws.send_text(json.dumps(hello))
        del hello  # not kept for the socket's life
        async with live.sessionmaker() as session:
            await _send_missed(conn, rooms, session, live, last_seq, known)
        while True:
            kind, item = await conn.queue.get()
            if kind == "text":
                await ws.send_text(item)
            elif kind == "close":
                await close_quietly(ws, *item)
                return
            elif kind == "resync":
                # A hub resync (the room forgot what it heard) or a client's `sync`
                # (it asked for the log): from the log.
                since = conn.last_seq if item is None else int(item)
                async with live.sessionmaker() as session:
                    await _send_missed(conn, rooms, session, live, since, None)
            else:
                frame: Frame = item
                if _whole(conn, frame):
                    await ws.send_text(frame.text)
                    if frame.first is not None:
                        conn.last_seq = max(conn.last_seq, frame.last)
                    continue
                for seq, ephemeral, text, message in frame.parts:
                    await _send_event(conn, rooms, live, seq, ephemeral, text, message)
    except _Removed:
        conn.closed = True
        await close_quietly(ws, CLOSE_REMOVED, "removed from the workshop")
    except (WebSocketDisconnect, RuntimeError, OSError):
        conn.closed = True
    except Exception:
        # Never leave a socket that takes commands but can no longer answer: log, close
        # with 1011 (server error) so the client reconnects and resumes by seq.
        log.exception("writer failed for workshop %s", conn.actor.workshop_id)
        conn.closed = True
        await close_quietly(ws, 1011, "server error; reconnect")


def _whole(conn: Connection, frame: Frame) -> bool:
    """Whether the frame follows on exactly from what the client has: no stored event
    missing before it or already sent, no ephemeral seq ahead, not its own removal."""
    if frame.need > conn.last_seq:
        return False
    if frame.first is None:
        return True
    return (
        frame.clean
        and frame.first == conn.last_seq + 1
        and conn.actor.participant_id not in frame.removed
    )


async def _send_event(
    conn: Connection,
    rooms: Rooms,
    live: LiveService,
    seq: int,
    ephemeral: bool,
    text: str,
    message: dict[str, Any],
) -> None:
    """One event of a frame on its own, fetching from the log what comes before it."""
    ws = conn.ws
    if ephemeral:
        # It names the latest stored seq: fetch any stored event before it that has
        # not arrived, so the client never sees a newer seq first.
        if seq > conn.last_seq:
            async with live.sessionmaker() as session:
                await _send_missed(conn, rooms, session, live, conn.last_seq, seq)
        await ws.send_text(text)
        return
    if seq <= conn.last_seq:
        return  # already delivered (by a catch-up)
    if seq > conn.last_seq + 1:
        async with live.sessionmaker() as session:
            await _send_missed(conn, rooms, session, live, conn.last_seq, seq - 1)
        if seq <= conn.last_seq:
            return
    await ws.send_text(text)
    conn.last_seq = seq
    _stop_if_removed(conn, message)


class _Removed(Exception):
    """This client's participant was removed: the writer closes the socket (4003)."""


def _stop_if_removed(conn: Connection, message: dict[str, Any]) -> None:
    """Raise _Removed once the client was sent its own `participant.removed`, live or
    in a catch-up (a lost publish): it must not see anything after it."""
    pid = conn.actor.participant_id
    if (
        pid is not None
        and message["type"] == "participant.removed"
        and message.get("participant_id") == pid
    ):
        raise _Removed
