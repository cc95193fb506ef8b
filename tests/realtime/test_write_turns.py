"""Write turns: a workshop's commands take turns in the process; other workshops' don't wait.

On PostgreSQL each command of a workshop takes the workshop's row lock; queueing them
per workshop in the process keeps at most one of this worker's transactions waiting in
the database for that row (SQLite has one process-wide turn instead).
"""

from __future__ import annotations

import asyncio

from app.services.live.engine import KeyedLocks


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
