"""The floor: the least a FastAPI WebSocket broadcast can cost on the same stack.

Same URL, same JSON shapes (hello, snapshot/replay, events echoing cid/ts, ack), no
database, no validation: each command gets the room's next seq, is serialised once
and queued to every member; `note.drag` is ephemeral. Run with the app's Uvicorn flags.
"""

import asyncio
import json
from datetime import UTC, datetime

from fastapi import FastAPI, WebSocket, WebSocketDisconnect

app = FastAPI()
rooms: dict[str, set[asyncio.Queue[str]]] = {}
logs: dict[str, list[str]] = {}


@app.get("/log/{room}")
async def log(room: str) -> dict[str, int]:
    return {"seq": len(logs.get(room, []))}


@app.websocket("/ws/workshops/{room}")
async def socket(ws: WebSocket, room: str) -> None:
    await ws.accept()
    log_, queue = logs.setdefault(room, []), asyncio.Queue[str]()
    members = rooms.setdefault(room, set())
    members.add(queue)  # before the catch-up: nothing falls between the two
    last, upto = int(ws.query_params.get("last_seq", "-1")), len(log_)
    await ws.send_text('{"type":"hello"}')
    for text in log_[last:upto] if last >= 0 else [json.dumps({"type": "snapshot", "seq": upto})]:
        await ws.send_text(text)

    async def writer() -> None:
        while True:
            await ws.send_text(await queue.get())

    task = asyncio.create_task(writer())
    try:
        while True:
            cmd = json.loads(await ws.receive_text())
            ephemeral = cmd["type"] == "note.drag"
            seq = len(log_) + (0 if ephemeral else 1)
            at = datetime.now(UTC).isoformat()
            text = json.dumps({**cmd, "seq": seq, "actor": "p", "at": at}, separators=(",", ":"))
            if not ephemeral:
                log_.append(text)
            for member in members:
                member.put_nowait(text)
            queue.put_nowait(json.dumps({"type": "ack", "cid": cmd.get("cid"), "seq": seq}))
    except WebSocketDisconnect:
        pass
    finally:
        members.discard(queue)
        task.cancel()
