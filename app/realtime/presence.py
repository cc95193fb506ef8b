"""Who is in a workshop's room, across every worker.

A participant may have several sockets (a laptop and a phone, a page reloading) and,
with several workers, on several workers at once; a phone that drops and comes back
usually lands on another worker before the first one notices the old socket is gone.
So no worker can say alone whether a participant is online: each says what its own
sockets say (`online` if any is, else `away` if any is, else nothing), on a shared
**board**, and the board answers for everyone.

* `MemoryBoard`: one worker, in this process (the embedded default, tests).
* `RedisBoard`: a Redis hash per workshop, `<prefix>presence:<workshop id>`, one
  field per participant: `<version>;<worker>=<status>;…`. Each change is one Lua
  script, so it is atomic across workers; when the hub is in Redis too, the same
  script publishes the `participant.presence` event on the workshop's channel (one
  round trip, not two). That connection is not the hub's publishing one, so the
  event may reach other workers ahead of a stored event this worker published just
  before it; it names that event's seq, and rooms hold it until the event arrives.
  A worker is alive while its key `<prefix>worker:<id>` exists (30 s, renewed every
  10 s): a crashed worker's word stops counting within 30 s, and after each renewal
  a worker sets its rooms right from the board, so they show the crashed worker's
  participants offline within 40 s. If the renewal finds its key gone (Redis
  restarted; it keeps nothing on disk), the worker writes all its participants
  again; a write that failed (Redis was away) is made again at the next renewal.

Every change gets a **version**, always more than the participant's previous one (in
Redis, the server's clock in microseconds; in memory, a counter).
`participant.presence` events carry it, and a room ignores an event older than what
it already has, so two workers' events crossing on their way no longer leave a
participant shown offline while connected.
A room that starts on a worker after others joined elsewhere reads the board first
(`Presence.fill`), and a page rendered by a worker without that room reads it too.

When the board cannot be reached (Redis down), the worker's own word is published
with version 0, which rooms always apply; the next versioned event sets it right.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from app.realtime.hub import Hub

if TYPE_CHECKING:
    from app.realtime.rooms import Room, Rooms

log = logging.getLogger(__name__)

RANK = {"offline": 0, "away": 1, "online": 2}
WORKER_TTL_S = 30
HEARTBEAT_S = 10.0
POOL_SIZE = 4
BOARD_TTL_S = 24 * 3600  # a board no one has written to for a day goes

# One participant's word from one worker: (status, version).
Seen = tuple[str, int]
# A `participant.presence` event for the board's script to publish: the channel, and
# the event's text up to its status (the script adds the status and version).
Wire = tuple[str, str]
# Called after each renewal of a worker's key: True if Redis had lost it.
Beat = Callable[[bool], Awaitable[None]]


def strongest(statuses: Any) -> str:
    return max(statuses, key=RANK.__getitem__, default="offline")


class MemoryBoard:
    """One worker: its word is everyone's."""

    shared = False

    def __init__(self) -> None:
        self._board: dict[str, dict[str, Seen]] = {}
        self._versions = itertools.count(1)

    async def start(self, beat: Beat) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def put(
        self, workshop_id: str, participant_id: str, status: str, wire: Wire | None = None
    ) -> Seen:
        seen = (status, next(self._versions))
        board = self._board.setdefault(workshop_id, {})
        board[participant_id] = seen
        if status == "offline":  # the board keeps only who is here
            del board[participant_id]
            if not board:
                del self._board[workshop_id]
        return seen

    async def read(self, workshop_id: str) -> dict[str, Seen]:
        return dict(self._board.get(workshop_id, {}))


# KEYS[1] the board; ARGV: participant, worker, its status ("offline": none), the
# workers' key prefix, the board's TTL and, to publish the event too, its channel and
# its text up to the status (`Presence._wire`). Returns {everyone's status, version}.
PUT = """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
local t = redis.call('TIME')
local version = tonumber(t[1]) * 1000000 + tonumber(t[2])
local words = {}
if raw then
  local first = true
  for part in string.gmatch(raw, '[^;]+') do
    if first then
      version = math.max(version, tonumber(part) + 1)
      first = false
    else
      local w, s = string.match(part, '^([^=]+)=(.+)$')
      if w ~= ARGV[2] and redis.call('EXISTS', ARGV[4] .. w) == 1 then
        words[w] = s
      end
    end
  end
end
if ARGV[3] ~= 'offline' then
  words[ARGV[2]] = ARGV[3]
end
local v = string.format('%.0f', version)
local parts = {v}
local best = 'offline'
for w, s in pairs(words) do
  table.insert(parts, w .. '=' .. s)
  if s == 'online' or (s == 'away' and best == 'offline') then
    best = s
  end
end
redis.call('HSET', KEYS[1], ARGV[1], table.concat(parts, ';'))
redis.call('EXPIRE', KEYS[1], ARGV[5])
if ARGV[6] then
  redis.call('PUBLISH', ARGV[6], ARGV[7] .. best .. '","version":' .. v .. '}')
end
return {best, v}
"""

# KEYS[1] the board; ARGV[1] the workers' key prefix. Returns a flat list of
# participant, status, version, counting only live workers' words.
READ = """
local all = redis.call('HGETALL', KEYS[1])
local alive = {}
local out = {}
for i = 1, #all, 2 do
  local first, version, best = true, '0', 'offline'
  for part in string.gmatch(all[i + 1], '[^;]+') do
    if first then
      version = part
      first = false
    else
      local w, s = string.match(part, '^([^=]+)=(.+)$')
      if alive[w] == nil then
        alive[w] = redis.call('EXISTS', ARGV[1] .. w) == 1
      end
      if alive[w] and (s == 'online' or (s == 'away' and best == 'offline')) then
        best = s
      end
    end
  end
  table.insert(out, all[i])
  table.insert(out, best)
  table.insert(out, version)
end
return out
"""


class RedisBoard:
    """The board in Redis, shared by every worker (see the module's docstring)."""

    shared = True

    def __init__(self, url: str, *, prefix: str = "cxw:", heartbeat: float = HEARTBEAT_S):
        # A few connections, waited for (at most 2 s): a reconnect storm of a thousand
        # sockets must not open a thousand connections to Redis.
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=POOL_SIZE,
            timeout=2,
            client_name="cxw-presence",
            decode_responses=True,
            retry=Retry(NoBackoff(), 0),
            socket_connect_timeout=2,
            socket_timeout=2,
        )
        self._redis = Redis(connection_pool=pool)
        self._prefix = prefix
        self.worker = os.urandom(6).hex()
        self._workers = prefix + "worker:"
        self._heartbeat = heartbeat
        self._put = self._redis.register_script(PUT)
        self._read = self._redis.register_script(READ)
        self._task: asyncio.Task[None] | None = None

    def _board(self, workshop_id: str) -> str:
        return f"{self._prefix}presence:{workshop_id}"

    async def start(self, beat: Beat) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self._alive()
        self._task = asyncio.create_task(self._beat(beat), name="presence-heartbeat")

    async def _alive(self) -> bool:
        """Renew this worker's key; False if it was gone (or this is the first time)."""
        before = await self._redis.set(self._workers + self.worker, 1, ex=WORKER_TTL_S, get=True)
        return before is not None

    async def _beat(self, beat: Beat) -> None:
        while True:
            await asyncio.sleep(self._heartbeat)
            try:
                gone = not await self._alive()
                if gone:
                    log.warning("presence: this worker's entry was gone from Redis; rewriting")
                await beat(gone)
            except (RedisError, OSError) as exc:
                log.warning("presence: cannot renew this worker in Redis (%s)", exc)
            except Exception:
                log.exception("presence: heartbeat failed")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait([task])
        with contextlib.suppress(RedisError, OSError):
            await self._redis.delete(self._workers + self.worker)
        await self._redis.aclose(close_connection_pool=True)

    async def put(
        self, workshop_id: str, participant_id: str, status: str, wire: Wire | None = None
    ) -> Seen:
        """Write this worker's word; with `wire`, also publish the event (`Presence._wire`)."""
        keys = [self._board(workshop_id)]
        args: list[str | int] = [participant_id, self.worker, status, self._workers, BOARD_TTL_S]
        if wire is not None:
            args += wire
        best, version = await self._put(keys=keys, args=args)
        return str(best), int(version)

    async def read(self, workshop_id: str) -> dict[str, Seen]:
        flat = await self._read(keys=[self._board(workshop_id)], args=[self._workers])
        return {str(flat[i]): (str(flat[i + 1]), int(flat[i + 2])) for i in range(0, len(flat), 3)}


Board = MemoryBoard | RedisBoard


def make_board(redis_url: str | None) -> Board:
    return RedisBoard(redis_url) if redis_url else MemoryBoard()


def presence_event(participant_id: str, status: str, version: int, seq: int) -> dict[str, Any]:
    """A `participant.presence` event (ephemeral: `seq` is the newest stored seq
    known where it is sent, so a client behind it fetches what it missed first)."""
    return {
        "type": "participant.presence",
        "seq": seq,
        "actor": participant_id,
        "at": datetime.now(UTC).isoformat(),
        "cid": None,
        "ts": None,
        "participant_id": participant_id,
        "status": status,
        "version": version,
    }


class Presence:
    """This worker's sockets' statuses per participant: written to the board, and
    everyone's word published to the workshop's room on every worker."""

    def __init__(self, board: Board, hub: Hub, rooms: Rooms) -> None:
        self.board = board
        self.hub = hub
        self.rooms = rooms
        # (workshop, participant) -> {socket key: its status}
        self._sockets: dict[tuple[str, str], dict[int, str]] = {}
        # One lock per participant with a write under way here, and how many use it.
        self._locks: dict[tuple[str, str], tuple[asyncio.Lock, int]] = {}
        # Participants whose latest word could not be written (Redis was down).
        self._unsaved: set[tuple[str, str]] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await self.board.start(self._beat)
        self.hub.after_resync(self._resynced)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await self.board.stop()

    def here(self, workshop_id: str, participant_id: str) -> str:
        """What this worker's own sockets say of a participant."""
        return strongest(self._sockets.get((workshop_id, participant_id), {}).values())

    async def change(
        self, workshop_id: str, participant_id: str, socket: int, status: str | None, seq: int
    ) -> None:
        """One socket's status (`None`: it closed): write this worker's word and
        publish everyone's."""
        key = (workshop_id, participant_id)
        sockets = self._sockets.setdefault(key, {})
        if status is None:
            sockets.pop(socket, None)
        else:
            sockets[socket] = status
        if not sockets:
            del self._sockets[key]
        await self._announce(key, seq)

    async def _announce(self, key: tuple[str, str], seq: int) -> None:
        lock, users = self._locks.get(key) or (asyncio.Lock(), 0)
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:  # this worker's words on one participant, in order
                event = presence_event(key[1], "offline", 0, seq)
                wire = self._wire(key[0], event)
                status, version = await self._write(*key, wire)
                event["status"], event["version"] = status, version
                if wire is not None and version:
                    # The script published it to the other workers: this one's own.
                    self.hub.deliver(key[0], event)
                else:
                    await self._publish(key[0], event)
        finally:
            lock, users = self._locks[key]
            if users > 1:
                self._locks[key] = (lock, users - 1)
            else:
                del self._locks[key]

    def _wire(self, workshop_id: str, event: dict[str, Any]) -> Wire | None:
        """With the board in Redis and the hub there too, the board's script publishes
        the event (one round trip, not two): its channel and its text up to the status,
        as the hub would publish it. None: the hub publishes it."""
        if not self.board.shared:
            return None
        wire = self.hub.wire(workshop_id)
        if wire is None:
            return None
        channel, origin = wire
        rest = {k: v for k, v in event.items() if k not in ("status", "version")}
        text = json.dumps(rest, separators=(",", ":"))
        return channel, origin + text[:-1] + ',"status":"'

    async def _write(self, workshop_id: str, participant_id: str, wire: Wire | None = None) -> Seen:
        key = (workshop_id, participant_id)
        mine = self.here(*key)  # as of now, not of the call
        try:
            seen = await self.board.put(workshop_id, participant_id, mine, wire)
        except (RedisError, OSError) as exc:
            log.warning("presence: cannot write to Redis (%s); publishing this worker's word", exc)
            self._unsaved.add(key)
            return mine, 0
        self._unsaved.discard(key)
        return seen

    async def _publish(self, workshop_id: str, event: dict[str, Any]) -> None:
        try:
            await self.hub.publish(workshop_id, event)
        except Exception:
            log.exception("presence: publish failed for workshop %s", workshop_id)

    async def read(self, workshop_id: str) -> dict[str, str]:
        """Everyone's status in a workshop: what the room here knows once it has read
        the board, else the board (for a page to render)."""
        room = self.rooms.rooms.get(workshop_id)
        if room is not None and (room.presence_filled is not None or not self.board.shared):
            await self.fill(room)  # (waits if its read is under way)
            return dict(room.presence)
        try:
            seen = await self.board.read(workshop_id)
        except (RedisError, OSError) as exc:
            log.warning("presence: cannot read Redis (%s); showing this worker's word", exc)
            return {
                pid: status
                for (wid, pid) in list(self._sockets)
                if wid == workshop_id and (status := self.here(wid, pid)) != "offline"
            }
        return {pid: status for pid, (status, _v) in seen.items()}

    async def fill(self, room: Room) -> None:
        """A room new on this worker learns what the board knows (once; whoever
        joins meanwhile waits for the same read)."""
        if not self.board.shared:
            return  # one worker: the room has heard every change since it opened
        if room.presence_filled is None:
            room.presence_filled = asyncio.ensure_future(self._fill(room))
        await asyncio.shield(room.presence_filled)

    async def _fill(self, room: Room) -> None:
        try:
            seen = await self.board.read(room.workshop_id)
        except (RedisError, OSError) as exc:
            log.warning("presence: cannot read Redis (%s); the room knows what it hears", exc)
            room.presence_filled = None  # the next join tries again
            return
        for pid, (status, version) in seen.items():
            room.saw_presence(pid, status, version)

    def _resynced(self) -> None:
        """The hub lost messages (Redis went away and came back): presence events
        may be among them."""
        task = asyncio.ensure_future(self._after_resync())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _after_resync(self) -> None:
        await self._rewrite(set(self._sockets) | self._unsaved)
        await self._correct(lost=True)

    async def _correct(self, *, lost: bool) -> None:
        """Set this worker's rooms right from the board, where they differ.

        `lost`: events may have been lost (the hub resubscribed), so a participant the
        board has no word on is offline. Otherwise (every renewal) only the board's
        versioned answers count: after a Redis restart a participant whose worker
        has not written again yet is not shown offline meanwhile. A worker that died
        leaves its words on the board, where they stop counting once its key expires
        (30 s): the next renewal here shows its participants offline."""
        if not self.board.shared:
            return
        for room in list(self.rooms.rooms.values()):
            try:
                seen = await self.board.read(room.workshop_id)
            except (RedisError, OSError):
                return  # gone again: the next resync or renewal tries again
            for pid in set(room.presence) | set(seen):
                status, version = seen.get(pid, ("offline", 0))
                if room.presence.get(pid, "offline") != status and (version or lost):
                    event = presence_event(pid, status, version, room.last_seq)
                    self.hub.deliver(room.workshop_id, event)

    async def _beat(self, gone: bool) -> None:
        """After each renewal: if Redis lost this worker's words (it restarted),
        write them all again; else those whose write failed (it was away). Then set
        the rooms right where the board says otherwise (a worker died)."""
        await self._rewrite(set(self._sockets) | self._unsaved if gone else set(self._unsaved))
        await self._correct(lost=False)

    async def _rewrite(self, keys: set[tuple[str, str]]) -> None:
        """Write these participants' words again, and publish everyone's."""
        for key in keys:
            room = self.rooms.rooms.get(key[0])
            await self._announce(key, room.last_seq if room is not None else 0)
