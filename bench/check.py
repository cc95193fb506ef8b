"""Correctness at the end of a run: each client's seq stream against the event log.

* lost: a stored event after the client's starting point (its first snapshot or
  resume point) that it never received (a later snapshot covers what it contains);
* duplicated: a seq received twice; reordered: a seq lower than the one before it;
* stored equals confirmed: the log's events (other than `workshop.created` and the
  HTTP joins' `participant.joined`) are exactly the acked commands, each with the
  event type its command makes, and the rows match (notes, dots, card votes).
"""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

import httpx

from bench.plan import EVENT_OF

NOT_FROM_COMMANDS = {"workshop.created", "participant.joined"}
ROW_TABLES = {"note.create": "note", "dot.add": "dotvote", "card.vote": "cardvote"}


async def _pg_fetch(url: str, room_ids: list[str]) -> dict[str, Any]:
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        out: dict[str, Any] = {}
        for wid in room_ids:
            rows = await conn.fetch("SELECT seq, type FROM event WHERE workshop_id = $1", wid)
            counts = {
                table: await conn.fetchval(
                    f"SELECT count(*) FROM {table} WHERE workshop_id = $1",  # noqa: S608
                    wid,
                )
                for table in ROW_TABLES.values()
            }
            out[wid] = {"events": {int(r["seq"]): str(r["type"]) for r in rows}, "rows": counts}
        return out
    finally:
        await conn.close()


def _sqlite_fetch(url: str, room_ids: list[str]) -> dict[str, Any]:
    path = url.split("///", 1)[1]
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        out: dict[str, Any] = {}
        for wid in room_ids:
            rows = conn.execute("SELECT seq, type FROM event WHERE workshop_id = ?", (wid,))
            events = {int(seq): str(type_) for seq, type_ in rows}
            counts = {
                table: conn.execute(
                    f"SELECT count(*) FROM {table} WHERE workshop_id = ?",  # noqa: S608
                    (wid,),
                ).fetchone()[0]
                for table in ROW_TABLES.values()
            }
            out[wid] = {"events": events, "rows": counts}
        return out
    finally:
        conn.close()


def stored_logs(target: str, base: str, database_url: str, room_ids: list[str]) -> dict[str, Any]:
    if target == "floor":
        out: dict[str, Any] = {}
        with httpx.Client(base_url=base) as http:
            for wid in room_ids:
                n = int(http.get(f"/log/{wid}").json()["seq"])
                out[wid] = {"events": dict.fromkeys(range(1, n + 1), "*"), "rows": None}
        return out
    if database_url.startswith("sqlite"):
        return _sqlite_fetch(database_url, room_ids)
    return asyncio.run(_pg_fetch(database_url, room_ids))


def verify(result: dict[str, Any], logs: dict[str, Any]) -> dict[str, Any]:
    lost = duplicated = reordered = 0
    for stream in result["streams"]:
        seqs: dict[int, str] = logs[stream["room"]]["events"]
        start = stream["start"]
        if start is None:
            start = max(seqs, default=0)
        covered_upto = max(stream["snapshots"], default=0)
        received: set[int] = set()
        for a, b in stream["ranges"]:
            received.update(range(a, b + 1))
        lost += sum(1 for s in seqs if s > start and s > covered_upto and s not in received)
        duplicated += stream["duplicates"]
        reordered += stream["reorders"]
    mismatched = wrong_type = rows_off = 0
    for room in result["rooms"]:
        log = logs[room["id"]]
        events: dict[int, str] = log["events"]
        confirmed = {int(seq): cmd for seq, cmd in room["confirmed"]}
        stored = {s for s, t in events.items() if t not in NOT_FROM_COMMANDS}
        mismatched += len(stored ^ set(confirmed))
        if log["rows"] is None:
            continue
        for seq, cmd in confirmed.items():
            if seq in events and events[seq] != EVENT_OF.get(cmd):
                wrong_type += 1
        for cmd, table in ROW_TABLES.items():
            n = sum(1 for c in confirmed.values() if c == cmd)  # no re-votes are scheduled
            if log["rows"][table] != n:
                rows_off += 1
    return {
        "lost": lost,
        "duplicated": duplicated,
        "reordered": reordered,
        "stored_not_confirmed": mismatched,
        "wrong_event_type": wrong_type,
        "row_count_mismatch": rows_off,
        "ok": lost == duplicated == reordered == mismatched == wrong_type == rows_off == 0,
    }
