"""Two real Uvicorn processes sharing PostgreSQL and Redis run one core function.

The facilitator and one participant are on worker A, two participants on worker B.
Everything one does reaches everyone, in the same order, and afterwards the
database holds exactly what the server confirmed.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlmodel import func, select

from app.db.engine import make_engine, make_sessionmaker
from app.db.models import CardVote, DotVote, Event, LevelDecision, LevelVote, Note, Workshop
from tests.conftest import REDIS_URL, TEST_SECRET, make_settings
from tests.net import free_port, uvicorn_command
from tests.realtime.conftest import Client, Server, new_workshop
from tests.realtime.conftest import Workshop as LiveWorkshop

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.postgres


async def _start_worker(url: str, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "ENVIRONMENT": "test",
        "DATABASE_URL": url,
        "REDIS_URL": REDIS_URL,
        "SECRET_KEY": TEST_SECRET,
        "PUBLIC_URL": f"http://127.0.0.1:{port}",
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(
            uvicorn_command(port),
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    async with httpx.AsyncClient() as http:
        for _ in range(300):
            if proc.poll() is not None:
                raise AssertionError(f"worker exited: {log.read_text()}")
            try:
                if (await http.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200:
                    return proc
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    proc.kill()
    raise AssertionError(f"worker on {port} did not start: {log.read_text()}")


@pytest.fixture
async def workers(
    pg_url: str, redis_url: str, tmp_path: Path
) -> AsyncIterator[tuple[Server, Server]]:
    ports = (free_port(), free_port())
    procs = [
        await _start_worker(pg_url, port, tmp_path / f"worker-{i}.log")
        for i, port in enumerate(ports)
    ]
    settings = make_settings(pg_url)
    try:
        async with (
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{ports[0]}") as a,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{ports[1]}") as b,
        ):
            yield (
                Server(str(a.base_url).rstrip("/"), settings, a),
                Server(str(b.base_url).rstrip("/"), settings, b),
            )
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


def _on(server: Server, workshop: LiveWorkshop) -> LiveWorkshop:
    return LiveWorkshop(server, workshop.id, workshop.join_code, workshop.facilitator_token)


async def _count(url: str, model: type, workshop_id: str) -> int:
    engine = make_engine(url)
    async with make_sessionmaker(engine)() as session:
        n = (
            await session.exec(
                select(func.count()).select_from(model).where(model.workshop_id == workshop_id)  # type: ignore[attr-defined]
            )
        ).one()
    await engine.dispose()
    return int(n)


async def test_note_from_one_worker_reaches_a_client_on_the_other(
    workers: tuple[Server, Server],
) -> None:
    a, b = workers
    workshop = await new_workshop(a)
    fac = await _on(a, workshop).facilitator()
    await fac.until("snapshot")
    await fac.do("workshop.start")
    await fac.do("phase.goto", index=4)  # measurement.reflect
    _pid, ann = await _on(b, workshop).participant("Ann")
    await ann.until("snapshot")
    ack = await ann.do("note.create", area="now", text="Feedback sits in three inboxes")
    seen = await fac.until("note.created")
    assert seen["seq"] == ack["seq"]
    assert seen["note"]["text"] == "Feedback sits in three inboxes"


async def test_scripted_core_function_on_two_workers(workers: tuple[Server, Server]) -> None:
    a, b = workers
    workshop = await new_workshop(a)
    on_a, on_b = _on(a, workshop), _on(b, workshop)
    fac = await on_a.facilitator()
    people: list[tuple[str, Client]] = [
        await on_a.participant("Ann"),
        await on_b.participant("Bo"),
        await on_b.participant("Cy"),
    ]
    clients = [fac] + [c for _, c in people]
    for client in clients:
        await client.until("snapshot")
    confirmed: list[int] = []

    async def do(client: Client, type_: str, **fields: object) -> dict:
        ack = await client.do(type_, **fields)
        if ack["seq"] is not None:
            confirmed.append(ack["seq"])
        return ack

    snapshot = fac.received[1]
    cards = [c["id"] for c in snapshot["definition"]["functions"][0]["cards"]]
    await do(fac, "workshop.start")  # -> measurement.sort
    choices = ["do", "do", "dont"]
    for (_, client), choice in zip(people, choices, strict=True):
        for card in cards:
            await do(client, "card.vote", card_id=card, choice=choice)
    await do(fac, "votes.reveal")
    await do(fac, "phase.next")  # discuss
    await do(fac, "card.settle", card_id=cards[-1], practised=False, note="Not yet")
    await do(fac, "phase.next")  # level vote, round 1
    for (_, client), level in zip(people, [0, 1, 2], strict=True):
        await do(client, "level.vote", level=level)
    await do(fac, "votes.reveal")
    await do(fac, "level_round.open")
    for _, client in people:
        await do(client, "level.vote", level=1)
    await do(fac, "votes.reveal")
    await do(fac, "phase.next")  # reflect
    notes = []
    for i, (_, client) in enumerate(people):
        ack = await do(client, "note.create", area="how", text=f"Idea {i}", x=0.1 * i, y=0.2)
        notes.append(ack["result"]["note_id"])
    await do(people[0][1], "note.move", note_id=notes[1], x=0.9, y=0.9)
    await do(fac, "group.create", area="how", label="Quick wins", note_ids=notes[:2])
    await do(fac, "phase.next")  # prioritise
    for _, client in people:
        await do(client, "dot.add", note_id=notes[0])
        await do(client, "dot.add", note_id=notes[2])
    await do(fac, "level.record", function_id="measurement", level=1, note="Agreed after round 2")

    last = max(confirmed)
    for client in clients:
        await client.until(
            lambda m, last=last: (
                m.get("seq") == last and "type" in m and m["type"] == "level.recorded"
            )
        )
    streams = [[(e["seq"], e["type"]) for e in c.events()] for c in clients]
    for client, stream in zip(clients, streams, strict=True):
        snapshot_seq = next(m["seq"] for m in client.received if m["type"] == "snapshot")
        seqs = [s for s, _ in stream]
        assert seqs == list(range(snapshot_seq + 1, last + 1)), "holes or repeats"
    # Everyone saw the same events in the same order, whichever worker served them.
    common = max(s[0][0] for s in streams)
    trimmed = [[e for e in s if e[0] >= common] for s in streams]
    assert all(t == trimmed[0] for t in trimmed)

    url = a.settings.database_url
    assert await _count(url, CardVote, workshop.id) == 3 * len(cards)
    assert await _count(url, LevelVote, workshop.id) == 6
    assert await _count(url, Note, workshop.id) == 3
    assert await _count(url, DotVote, workshop.id) == 6
    assert await _count(url, LevelDecision, workshop.id) == 1
    engine = make_engine(url)
    async with make_sessionmaker(engine)() as session:
        stored = await session.get(Workshop, workshop.id)
        assert stored is not None
        rows = (await session.exec(select(Event.seq).where(Event.workshop_id == workshop.id))).all()
    await engine.dispose()
    assert stored.seq == last
    assert sorted(rows) == list(range(1, last + 1))
    assert set(confirmed) <= set(rows)
    for client in clients:
        await client.close()


def _presence_in(snapshot: dict, participant_id: str) -> str:
    return next(p["presence"] for p in snapshot["participants"] if p["id"] == participant_id)


async def test_presence_is_one_answer_on_every_worker(workers: tuple[Server, Server]) -> None:
    """A room that starts on a worker after people joined on another shows them
    online; a phone that comes back on the other worker before the first notices its
    old socket is gone stays online; each worker's pages say the same."""
    a, b = workers
    workshop = await new_workshop(a)
    on_a, on_b = _on(a, workshop), _on(b, workshop)
    ann_id, ann_token = await on_b.join("Ann")
    ann_on_b = await on_b.connect(ann_token, "Ann")
    fac = await on_a.facilitator()  # the workshop's first socket on A
    assert _presence_in(await fac.until("snapshot"), ann_id) == "online"

    ann_on_a = await on_a.connect(ann_token, "Ann")  # her phone, back on A
    await ann_on_b.close()  # B notices the old socket only now
    await fac.quiet(0.5)
    said = [
        m["status"]
        for m in fac.received
        if m.get("type") == "participant.presence" and m["participant_id"] == ann_id
    ]
    assert said and said[-1] == "online", said
    watcher = await on_b.facilitator()  # B's room for this workshop starts again
    assert _presence_in(await watcher.until("snapshot"), ann_id) == "online"

    await ann_on_a.close()
    for client in (fac, watcher):
        gone = await client.until(
            lambda m: m.get("type") == "participant.presence" and m["status"] == "offline"
        )
        assert gone["participant_id"] == ann_id
    late = await on_b.facilitator()
    assert _presence_in(await late.until("snapshot"), ann_id) == "offline"
    for client in (fac, watcher, late):
        await client.close()
