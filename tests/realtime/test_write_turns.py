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


async def test_a_workshops_turn_ends_once_its_events_are_sent_not_when_the_hub_replies(
    server: Server, workshop: Workshop, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A command waits for the hub's reply (Redis's, with several workers) outside its
    workshop's turn: the next command of the room runs meanwhile, and each sender's
    ack still comes only once its own event has been carried."""
    fac = await workshop.facilitator()
    _pa, ann = await workshop.participant("Ann")
    _pb, bob = await workshop.participant("Bob")
    await fac.do("workshop.start")
    hub = server.app.state.live.hub
    send = hub.send
    held = asyncio.Event()
    sent: list[int] = []

    async def slow_reply(workshop_id: str, message: dict[str, Any]) -> Any:
        carried = await send(workshop_id, message)  # delivered now
        sent.append(message["seq"])
        first = len(sent) == 1

        async def reply() -> None:
            await carried
            if first:
                await held.wait()  # the first command's reply is late

        return reply()

    monkeypatch.setattr(hub, "send", slow_reply)
    ann_cid = await ann.send("card.vote", card_id=CARD, choice="do")
    # Ann's vote is stored and delivered, her ack waits for the hub's reply...
    await bob.until(lambda m: m.get("type") == "card.voted" and m["cid"] == ann_cid)
    # ...while Bob's vote, in the same workshop, goes through on its own.
    bob_ack = await bob.do("card.vote", card_id=CARD, choice="dont")
    assert sent == [bob_ack["seq"] - 1, bob_ack["seq"]]
    assert not [m for m in await ann.quiet(0.2) if m.get("cid") == ann_cid and "seq" not in m]
    assert not [m for m in ann.received if m.get("type") == "ack"]
    held.set()
    assert (await ann.reply(ann_cid))["type"] == "ack"
