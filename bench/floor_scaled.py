"""The floor with several workers: `bench/floor.py`'s broadcast carried between
Uvicorn workers by Redis, the least a scaled-out FastAPI WebSocket broadcast costs.

Each command is one Redis script call (the room's next seq, the event kept in a list,
PUBLISH); each worker PSUBSCRIBEs once and queues what it hears to its own members.
Same URL and JSON shapes as the one-process floor. Run with the app's Uvicorn flags
and `--workers N`; FLOOR_REDIS_URL and FLOOR_PREFIX (the run's own keys) configure it.
"""

import asyncio
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import redis.asyncio as redis
from fastapi import FastAPI, WebSocket, WebSocketDisconnect

URL = os.environ.get("FLOOR_REDIS_URL", "redis://127.0.0.1:6379/0")
PREFIX = os.environ.get("FLOOR_PREFIX", "cxw-floor:")
# KEYS: seq, log. ARGV: channel, the text before its seq, after it, "s" stored / "e" not.
# Publishes "<kind> <seq> <text>": a worker needs the seq without parsing the JSON.
SCRIPT = """
local seq
if ARGV[4] == 's' then seq = redis.call('INCR', KEYS[1])
else seq = tonumber(redis.call('GET', KEYS[1]) or '0') end
local text = ARGV[2] .. seq .. ARGV[3]
if ARGV[4] == 's' then redis.call('RPUSH', KEYS[2], text) end
redis.call('PUBLISH', ARGV[1], ARGV[4] .. ' ' .. seq .. ' ' .. text)
return seq
"""
db = redis.Redis.from_url(URL, decode_responses=True)
command = db.register_script(SCRIPT)
rooms: dict[str, set[asyncio.Queue[tuple[int, str]]]] = {}


async def listen(pubsub: redis.client.PubSub) -> None:
    async for msg in pubsub.listen():
        if msg["type"] == "pmessage":
            kind, seq, text = msg["data"].split(" ", 2)
            for member in rooms.get(msg["channel"].removeprefix(PREFIX + "room:"), ()):
                member.put_nowait((int(seq) if kind == "s" else 0, text))


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    pubsub = db.pubsub()
    await pubsub.psubscribe(PREFIX + "room:*")  # confirmed before anyone connects
    task = asyncio.create_task(listen(pubsub))
    yield
    task.cancel()
    await pubsub.aclose()


app = FastAPI(lifespan=lifespan)


@app.get("/log/{room}")
async def log(room: str) -> dict[str, int]:
    return {"seq": int(await db.llen(PREFIX + "log:" + room))}


@app.websocket("/ws/workshops/{room}")
async def socket(ws: WebSocket, room: str) -> None:
    await ws.accept()
    queue = asyncio.Queue[tuple[int, str]]()
    members = rooms.setdefault(room, set())
    members.add(queue)  # before reading the log: what is stored later is heard
    keys = [PREFIX + "seq:" + room, PREFIX + "log:" + room]
    last, upto = int(ws.query_params.get("last_seq", "-1")), int(await db.get(keys[0]) or 0)
    await ws.send_text('{"type":"hello"}')
    texts = [str(t) for t in await db.lrange(keys[1], last, upto - 1)] if last >= 0 else []
    for text in texts if last >= 0 else [json.dumps({"type": "snapshot", "seq": upto})]:
        await ws.send_text(text)

    async def writer() -> None:
        while True:
            seq, text = await queue.get()
            if seq == 0 or seq > upto:  # stored ones up to `upto` came from the log
                await ws.send_text(text)

    task = asyncio.create_task(writer())
    try:
        while True:
            cmd = json.loads(await ws.receive_text())
            kind = "e" if cmd["type"] == "note.drag" else "s"
            at = datetime.now(UTC).isoformat()
            body = {k: v for k, v in cmd.items() if k != "seq"} | {"actor": "p", "at": at}
            before = json.dumps({**body, "seq": 0}, separators=(",", ":"))[:-2]
            seq = await command(keys, [PREFIX + "room:" + room, before, "}", kind])
            queue.put_nowait((0, json.dumps({"type": "ack", "cid": cmd.get("cid"), "seq": seq})))
    except WebSocketDisconnect:
        pass
    finally:
        members.discard(queue)
        task.cancel()
