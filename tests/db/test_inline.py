"""The live commands' SQLite engine: calls on the loop's thread, busy locks waited out."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from app.db import engine as db_engine
from app.db.engine import Checkpointer, make_engine, make_live_engine
from app.db.inline import InlineConnection


async def _table(url: str) -> None:
    engine = make_engine(url)
    async with engine.begin() as conn:
        await conn.exec_driver_sql("CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER)")
        await conn.exec_driver_sql("INSERT INTO t VALUES (1, 0)")
    await engine.dispose()


async def test_runs_on_the_loop_thread_with_the_pragmas(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'inline.db'}"
    await _table(url)
    engine = make_engine(url)
    live = make_live_engine(engine)
    assert live is not engine
    threads_before = set(threading.enumerate())
    try:
        async with live.begin() as conn:
            raw = await conn.get_raw_connection()
            assert isinstance(raw.driver_connection, InlineConnection)
            pragmas = {
                name: (await conn.exec_driver_sql(f"PRAGMA {name}")).scalar()
                for name in ("journal_mode", "foreign_keys", "synchronous", "busy_timeout")
            }
            await conn.execute(text("UPDATE t SET v = v + 1 WHERE id = 1"))
        assert pragmas == {
            "journal_mode": "wal",
            "foreign_keys": 1,
            "synchronous": 1,
            "busy_timeout": 0,
        }
        # No worker thread started (one left over from before may have ended since).
        assert set(threading.enumerate()) - threads_before == set()
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT v FROM t"))).scalar() == 1
    finally:
        await live.dispose()
        await engine.dispose()


async def test_waits_for_a_writer_of_the_same_process_without_blocking_the_loop(
    tmp_path: Path,
) -> None:
    """A threaded-engine transaction holds the write lock across awaits: the live
    engine's write waits for it with the loop running, so that it can finish."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'inline.db'}"
    await _table(url)
    engine = make_engine(url)
    live = make_live_engine(engine)
    try:
        async with engine.begin() as holder:
            await holder.execute(text("UPDATE t SET v = v + 10 WHERE id = 1"))

            async def live_write() -> int:
                async with live.begin() as conn:
                    result = await conn.execute(
                        text("UPDATE t SET v = v + 1 WHERE id = 1 RETURNING v")
                    )
                    return int(result.scalar_one())

            writer = asyncio.create_task(live_write())
            await asyncio.sleep(0.2)  # the loop runs while the live write waits
            assert not writer.done()
        assert await asyncio.wait_for(writer, 5) == 11
    finally:
        await live.dispose()
        await engine.dispose()


async def test_gives_up_after_the_busy_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db_engine, "SQLITE_BUSY_TIMEOUT_MS", 200)
    url = f"sqlite+aiosqlite:///{tmp_path / 'inline.db'}"
    await _table(url)
    engine = make_engine(url)
    live = make_live_engine(engine)
    loop = asyncio.get_running_loop()
    try:
        async with engine.begin() as holder:
            await holder.execute(text("UPDATE t SET v = v + 10 WHERE id = 1"))
            started = loop.time()
            with pytest.raises(OperationalError, match="database is locked"):
                async with live.begin() as conn:
                    await conn.execute(text("UPDATE t SET v = v + 1 WHERE id = 1"))
            assert 0.2 <= loop.time() - started < 2
        async with live.connect() as conn:
            assert (await conn.execute(text("SELECT v FROM t"))).scalar() == 10
    finally:
        await live.dispose()
        await engine.dispose()


async def test_postgresql_and_memory_keep_one_engine() -> None:
    for url in ("sqlite+aiosqlite://", "postgresql+asyncpg://u:p@127.0.0.1:1/x"):
        engine = make_engine(url)
        try:
            assert make_live_engine(engine) is engine
        finally:
            await engine.dispose()


async def test_live_commits_leave_checkpoints_to_the_checkpointer(tmp_path: Path) -> None:
    """The live engine never checkpoints on the loop's thread; `Checkpointer` copies
    the log into the database file from the threaded engine, periodically."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'inline.db'}"
    await _table(url)
    engine = make_engine(url)
    live = make_live_engine(engine)
    checkpointer = Checkpointer(engine, interval_s=0.02)
    try:
        async with live.connect() as conn:
            assert (await conn.exec_driver_sql("PRAGMA wal_autocheckpoint")).scalar() == 0
        async with engine.connect() as conn:
            assert (await conn.exec_driver_sql("PRAGMA wal_autocheckpoint")).scalar() == 1000
        # More than the default 1000 pages of log: an autocheckpointing connection
        # would have copied them into the file at some commit; these stay in the log.
        for _ in range(20):
            async with live.begin() as conn:
                await conn.exec_driver_sql("INSERT INTO t (v) SELECT v FROM t LIMIT 1")
                await conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS big (b BLOB)")
                await conn.exec_driver_sql("INSERT INTO big VALUES (zeroblob(262144))")
        checkpointer.start()
        for _ in range(250):
            if checkpointer.last is not None:
                break
            await asyncio.sleep(0.02)
        assert checkpointer.last is not None
        busy, log_pages, copied = checkpointer.last
        assert busy == 0
        assert log_pages > 1000  # nothing was checkpointed before the task ran
        assert copied == log_pages
        # Nothing new: the same log, all of it in the file already.
        assert await checkpointer.run_once() == (0, log_pages, log_pages)
        # The next write starts the log again from its beginning.
        async with live.begin() as conn:
            await conn.exec_driver_sql("INSERT INTO t (v) VALUES (7)")
        busy, again, copied = await checkpointer.run_once()
        assert (busy, copied) == (0, again) and 0 < again < log_pages
        async with engine.connect() as conn:
            assert (await conn.exec_driver_sql("SELECT count(*) FROM big")).scalar() == 20
    finally:
        await checkpointer.stop()
        await live.dispose()
        await engine.dispose()
