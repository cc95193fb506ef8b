"""Write turns: a workshop's commands take turns in the process; other workshops' don't wait;
a command's number goes back when it writes no event.

On PostgreSQL each command of a workshop takes the workshop's row lock; queueing them
per workshop in the process keeps at most one of this worker's transactions waiting in
the database for that row (SQLite has one process-wide turn instead).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from app.services.live.engine import HANDLERS, KeyedLocks
from tests.realtime.conftest import Server, Workshop

CARD = "measurement-feedback-channel"


async def _turns(n: int = 5) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def test_one_workshops_commands_take_turns_and_another_workshop_does_not_wait() -> None:
    locks = KeyedLocks()
    seen: list[tuple[str, str]] = []
    release = asyncio.Event()

    async def command(workshop: str, name: str) -> None:
        async with locks.get(workshop):
            seen.append(("in", name))
            await release.wait()
            seen.append(("out", name))

    tasks = [
        asyncio.create_task(command("w1", "a")),
        asyncio.create_task(command("w1", "b")),
        asyncio.create_task(command("w2", "c")),
    ]
    await _turns()
    assert seen == [("in", "a"), ("in", "c")]  # b waits for a; c does not
    assert len(locks) == 2
    release.set()
    await asyncio.gather(*tasks)
    assert seen.index(("out", "a")) < seen.index(("in", "b"))
    assert len(locks) == 0  # nothing kept once no one holds or waits


async def test_a_failed_command_gives_its_turn_up() -> None:
    locks = KeyedLocks()

    async def failing() -> None:
        async with locks.get("w1"):
            raise RuntimeError("refused")

    task = asyncio.create_task(failing())
    await _turns()
    assert task.done() and isinstance(task.exception(), RuntimeError)
    async with asyncio.timeout(5):
        async with locks.get("w1"):
            pass
    assert len(locks) == 0


async def test_a_command_that_writes_no_event_gives_its_number_back(
    server: Server, workshop: Workshop, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The number a command takes with the workshop row goes back when it emits
    nothing, for a participant (a plain row) as for the facilitator (an ORM object):
    the next event follows on without a hole."""
    fac = await workshop.facilitator()
    _pid, ann = await workshop.participant("Ann")
    seq = (await fac.do("workshop.start"))["seq"]

    async def emits_nothing(_ctx: Any, _cmd: Any) -> None:
        return None

    # The usual path's handlers (on PostgreSQL a card vote goes to the PgLane first).
    monkeypatch.setattr(server.app.state.live, "pg_lane", None)
    monkeypatch.setitem(HANDLERS, "card.vote", emits_nothing)
    monkeypatch.setitem(HANDLERS, "timer.pause", emits_nothing)
    assert (await ann.do("card.vote", card_id=CARD, choice="do"))["seq"] is None
    assert (await fac.do("timer.pause"))["seq"] is None
    monkeypatch.undo()
    assert (await fac.do("input.lock"))["seq"] == seq + 1
    assert (await ann.refused("card.vote", card_id=CARD, choice="do"))["code"] == "locked"
    assert (await fac.do("input.unlock"))["seq"] == seq + 2
