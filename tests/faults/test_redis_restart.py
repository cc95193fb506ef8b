"""Redis goes away mid-workshop and comes back: two workers, PostgreSQL, a private Redis.

Worker A serves the facilitator and Ann, worker B serves Bo; fan-out between them is
a `redis-server` this test started on a free port. While it is stopped, commands
still commit and are acknowledged (the publish fails and is logged; the events are
in the log), and reach only the clients of the worker that stored them, which fetch
from the log any earlier event they did not hear. When Redis is back on the same
port, each worker's subscriber reconnects by itself and resynchronises its clients
from the log, so every client gets what it missed, and live fan-out between the
workers resumes. Every client's stream stays in order, each event once, with no holes.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from sqlmodel import col, select

from app.db.engine import make_engine, make_sessionmaker
from app.db.models import Event, Note
from tests.faults.conftest import RedisProcess, ServerProcess, Stream, wait_until
from tests.net import free_port
from tests.realtime.conftest import new_workshop

pytestmark = pytest.mark.postgres
REFLECT = 4  # measurement.reflect


async def _log(url: str, workshop_id: str) -> tuple[list[int], int]:
    engine = make_engine(url)
    async with make_sessionmaker(engine)() as session:
        seqs = list(
            (
                await session.exec(
                    select(Event.seq)
                    .where(Event.workshop_id == workshop_id)
                    .order_by(col(Event.seq))
                )
            ).all()
        )
        notes = len((await session.exec(select(Note).where(Note.workshop_id == workshop_id))).all())
    await engine.dispose()
    return seqs, notes


def _has(stream: Stream, *seqs: int) -> bool:
    got = {m["seq"] for m in stream.stored()}
    return all(seq in got for seq in seqs)


async def _until_has(stream: Stream, *seqs: int, timeout: float = 10) -> None:
    await wait_until(lambda: _has(stream, *seqs), timeout, f"{stream.name}: events {seqs}")


async def test_redis_restart_with_two_workers(
    pg_url: str, own_redis: RedisProcess, tmp_path: Path, processes: list[ServerProcess]
) -> None:
    a = ServerProcess(pg_url, free_port(), tmp_path / "a", redis_url=own_redis.url)
    b = ServerProcess(pg_url, free_port(), tmp_path / "b", redis_url=own_redis.url)
    processes += [a, b]
    await a.start()
    await b.start()
    async with httpx.AsyncClient(base_url=a.base) as http:
        workshop = await new_workshop(a.server(http), "redis@agency.gov")
        fac = await Stream.open(a.base, workshop.id, workshop.facilitator_token, "fac")
        _ann_id, ann_token = await workshop.join("Ann")
        _bo_id, bo_token = await workshop.join("Bo")
        ann = await Stream.open(a.base, workshop.id, ann_token, "Ann")
        bo = await Stream.open(b.base, workshop.id, bo_token, "Bo")
        clients = (fac, ann, bo)
        await fac.do("workshop.start")
        goto = await fac.do("phase.goto", index=REFLECT)
        for client in clients:
            await _until_has(client, goto["seq"])

        # Across workers before the fault.
        before = await bo.do("note.create", area="now", text="Before the outage")
        await _until_has(fac, before["seq"])  # from B to A

        own_redis.stop()
        await asyncio.sleep(1.0)  # long enough for both subscribers to fail and back off
        during = [
            await ann.do("note.create", area="how", text="Written while Redis is down (A)"),
            await bo.do("note.create", area="how", text="Written while Redis is down (B)"),
            await fac.do("spotlight.set", target={"kind": "area", "id": "how"}),
        ]
        missed = [ack["seq"] for ack in during]
        assert missed == list(range(before["seq"] + 1, before["seq"] + 4))
        seqs, notes = await _log(pg_url, workshop.id)
        assert seqs[-1] == missed[-1] and notes == 3, "commands must commit without Redis"
        # Each worker's own clients heard its events at once; a later event of their
        # own showed them the other worker's (missed[1]) was missing, and they fetched
        # it from the log. Bo (worker B) heard of nothing later than his own.
        for client in (fac, ann):
            await _until_has(client, *missed)
        await _until_has(bo, *missed[:2])
        await asyncio.sleep(0.5)
        assert not _has(bo, missed[2]), "nothing carried it to worker B"

        await own_redis.start()  # the same port
        for client in clients:  # resynchronised from the log, not re-sent by anyone
            await _until_has(client, *missed, timeout=20)

        # Live fan-out between the workers works again, both ways.
        after_b = await bo.do("note.create", area="hope", text="After the outage (B)")
        await _until_has(fac, after_b["seq"])
        await _until_has(ann, after_b["seq"])
        after_a = await ann.do("note.move", note_id=after_b["result"]["note_id"], x=0.2, y=0.8)
        await _until_has(bo, after_a["seq"])

        final, _ = await _log(pg_url, workshop.id)
        assert final == list(range(1, after_a["seq"] + 1))
        for client in clients:
            client.assert_in_order()
            assert client.stored()[-1]["seq"] == after_a["seq"]
            await client.close()
    logs = a.logs() + b.logs()
    assert "publish failed" in logs, "a failed publish must be logged"
    assert logs.count("unavailable") >= 2, "both subscribers noticed the outage"
