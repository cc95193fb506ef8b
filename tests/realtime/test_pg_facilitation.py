"""A facilitator's command on PostgreSQL as a read and one write on the lane
(app/services/live/pg_facilitation.py, migration a4c9e2f1b7d3).

tests/realtime/test_pg_lane.py runs a whole script with and without the lane and
compares replies, events and rows, facilitators' commands included. Here: the
command's statements, a workshop that changed between the read and the write,
commands the lane leaves to the usual path, a write that fails midway, and the
function's list of columns against the model's.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy import event as sa_event

from app.services.live.pg_facilitation import WRITABLE
from app.services.live.pg_lane import FACILITATE, WORKSHOP, LaneUnavailable, PgLane
from app.services.live.workshop_row import COLUMNS
from tests.realtime.conftest import Server, Workshop

# On PostgreSQL (the one test without a server below needs none).
on_postgres = pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
pytestmark = [pytest.mark.postgres]

CARD = "measurement-feedback-channel"
SORT, LEVEL_VOTE, REFLECT = 1, 3, 4  # phase indexes in the default definition
MIGRATION = (
    Path(__file__).parents[2]
    / "migrations/versions/20261207_a4c9e2f1b7d3_live_facilitate_function.py"
)


def test_the_function_can_write_every_column_of_the_workshop_but_its_id_and_seq() -> None:
    """A column added to the model needs the function to write it too (a new
    migration); until then the lane leaves commands that change it to the usual path."""
    spec = importlib.util.spec_from_file_location("facilitate_migration", MIGRATION)
    assert spec is not None and spec.loader is not None
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)
    assert set(migration.COLUMNS) == WRITABLE == set(COLUMNS) - {"id", "seq"}


@on_postgres
async def test_a_facilitators_command_is_a_lane_read_and_one_write(
    server: Server, workshop: Workshop
) -> None:
    """Starting, changing phase and revealing votes: no statement through SQLAlchemy;
    the lane reads the row (and the reveal its counts), then writes once; the room
    and the log see what the usual path gives."""
    lane = server.pg_lane
    fac = await workshop.facilitator()
    _pid, ann = await workshop.participant("Ann")
    statements: list[str] = []
    lane_sql: list[str] = []
    call = lane._call

    async def counted(sql: str, calls: list[tuple[Any, ...]], **kwargs: Any) -> Any:
        lane_sql.append(sql)
        return await call(sql, calls, **kwargs)

    lane._call = counted  # type: ignore[method-assign]

    def seen(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        statements.append(statement)

    engine = server.app.state.engine.sync_engine
    sa_event.listen(engine, "before_cursor_execute", seen)
    try:
        before = lane.facilitated
        started = await fac.do("workshop.start")
        assert statements == [] and lane.facilitated == before + 1
        assert lane_sql == [WORKSHOP, FACILITATE]
        await ann.do("card.vote", card_id=CARD, choice="do")
        lane_sql.clear()
        revealed = await fac.do("votes.reveal")
        assert statements == [] and lane.facilitated == before + 2
        assert len(lane_sql) == 3 and "FROM cardvote" in lane_sql[1]
        assert (lane_sql[0], lane_sql[2]) == (WORKSHOP, FACILITATE)
    finally:
        sa_event.remove(engine, "before_cursor_execute", seen)
        lane._call = call  # type: ignore[method-assign]
    assert revealed["seq"] == started["seq"] + 2  # the vote between
    event = await ann.until("votes.revealed")
    counts = {c["card_id"]: (c["do"], c["voters"]) for c in event["results"]["cards"]}
    assert counts[CARD] == (1, 1)
    admin = await asyncpg.connect(server.pg_dsn)
    try:
        row = await admin.fetchrow(
            "SELECT seq, state, current_phase, revealed::text, started_at FROM workshop"
            " WHERE id = $1",
            workshop.id,
        )
        logged = await admin.fetch(
            "SELECT seq, type, actor FROM event WHERE workshop_id = $1 AND seq >= $2 ORDER BY seq",
            workshop.id,
            started["seq"],
        )
    finally:
        await admin.close()
    assert (row["seq"], row["state"], row["current_phase"]) == (revealed["seq"], "running", SORT)
    assert row["revealed"] == '["cards:measurement"]' and row["started_at"] is not None
    assert [(r["seq"] - started["seq"], r["type"]) for r in logged] == [
        (0, "workshop.started"),
        (1, "card.voted"),
        (2, "votes.revealed"),
    ]
    assert logged[0]["actor"].startswith("facilitator:")


def _first_write_after(lane: PgLane, other: Any, seen: list[Any]) -> Any:
    """`lane.write`, but the first call runs `other()` before it (a command committed
    between the facilitator's read and write); `seen`: the first write's answer, then
    what `other()` returned."""
    write = lane.write

    async def write_after(sql: str, args: tuple[Any, ...]) -> Any:
        if seen:
            return await write(sql, args)
        seen.append(None)
        done = await other()
        seen[0] = await write(sql, args)
        seen.append(done)
        return seen[0]

    return write_after


@on_postgres
async def test_a_reveal_after_a_vote_committed_since_its_read_goes_the_usual_way(
    server: Server, workshop: Workshop, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reveal reads the votes: a vote committed between its reads and its write
    has the write refused with nothing written, and the usual path reveals the
    counts with that vote in them, numbered after it."""
    lane = server.pg_lane
    fac = await workshop.facilitator()
    _pa, ann = await workshop.participant("Ann")
    _pb, bob = await workshop.participant("Bob")
    await fac.do("workshop.start")
    await ann.do("card.vote", card_id=CARD, choice="do")
    seen: list[Any] = []

    async def bob_votes() -> Any:
        return await bob.do("card.vote", card_id=CARD, choice="dont")

    monkeypatch.setattr(lane, "write", _first_write_after(lane, bob_votes, seen))
    before = lane.facilitated
    revealed = await fac.do("votes.reveal")
    assert seen[0] is None and lane.facilitated == before
    assert revealed["seq"] == seen[1]["seq"] + 1
    event = await ann.until("votes.revealed")
    counts = {c["card_id"]: (c["do"], c["dont"]) for c in event["results"]["cards"]}
    assert counts[CARD] == (1, 1)
    seqs = [m["seq"] for m in ann.events()]
    assert seqs == sorted(set(seqs))


@on_postgres
async def test_participants_commands_since_the_read_do_not_stop_a_phase_change(
    server: Server, workshop: Workshop, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A command that read only the workshop row is written if the row's columns are
    as read, whatever participants committed meanwhile: numbered after their events."""
    lane = server.pg_lane
    fac = await workshop.facilitator()
    _pa, ann = await workshop.participant("Ann")
    await fac.do("workshop.start")
    seen: list[Any] = []

    async def ann_votes() -> Any:
        return await ann.do("card.vote", card_id=CARD, choice="do")

    monkeypatch.setattr(lane, "write", _first_write_after(lane, ann_votes, seen))
    before = lane.facilitated
    moved = await fac.do("phase.goto", index=REFLECT)
    assert seen[0] is not None and lane.facilitated == before + 1
    assert moved["seq"] == seen[1]["seq"] + 1
    changed = await ann.until("phase.changed")
    assert (changed["seq"], changed["phase"]["index"]) == (moved["seq"], REFLECT)
    seqs = [m["seq"] for m in ann.events()]
    assert seqs == sorted(set(seqs))


@on_postgres
async def test_a_workshop_changed_since_the_read_is_written_the_usual_way(
    server: Server, workshop: Workshop, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another facilitator's command changed the row between the read and the write
    (a second tab): the write is refused, and the usual path moves on from the
    phase the other one chose, not from the one read."""
    lane = server.pg_lane
    fac = await workshop.facilitator()
    tab = await workshop.facilitator()
    await fac.do("workshop.start")
    seen: list[Any] = []

    async def other_tab() -> Any:
        return await tab.do("phase.goto", index=REFLECT)

    monkeypatch.setattr(lane, "write", _first_write_after(lane, other_tab, seen))
    before = lane.facilitated
    moved = await fac.do("phase.next")
    assert seen[0] is None and lane.facilitated == before + 1  # only the other tab's
    assert moved["seq"] == seen[1]["seq"] + 1
    changed = await fac.until(
        lambda m: m.get("type") == "phase.changed" and m["seq"] == moved["seq"]
    )
    assert changed["phase"]["index"] == REFLECT + 1


@on_postgres
async def test_commands_the_lane_cannot_write_go_the_usual_way(
    server: Server, workshop: Workshop
) -> None:
    """Entering a level vote opens its round (an ORM write); a refusal is the usual
    path's, with its reason; the lane writes the next one again."""
    lane = server.pg_lane
    fac = await workshop.facilitator()
    before = lane.facilitated
    assert (await fac.refused("phase.next"))["code"] == "not_running"
    await fac.do("workshop.start")
    assert lane.facilitated == before + 1
    await fac.do("phase.goto", index=LEVEL_VOTE)
    assert lane.facilitated == before + 1
    admin = await asyncpg.connect(server.pg_dsn)
    try:
        rounds = await admin.fetchval(
            "SELECT count(*) FROM levelround WHERE workshop_id = $1", workshop.id
        )
    finally:
        await admin.close()
    assert rounds == 1
    await fac.do("phase.goto", index=REFLECT)
    assert lane.facilitated == before + 2
    assert (await fac.refused("votes.reveal"))["code"] == "wrong_phase"
    assert lane.facilitated == before + 2


@on_postgres
async def test_a_write_that_fails_midway_answers_try_again(
    server: Server, workshop: Workshop, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The write may have committed: the facilitator is told to try again, nothing is
    retried; a read that fails leaves the command to the usual path."""
    lane = server.pg_lane
    fac = await workshop.facilitator()
    write, fetch = lane.write, lane.fetch

    async def lost(_sql: str, _args: tuple[Any, ...]) -> Any:
        raise LaneUnavailable("connection lost")

    async def unread(_sql: str, _args: tuple[Any, ...]) -> Any:
        return None

    monkeypatch.setattr(lane, "write", lost)
    assert (await fac.refused("workshop.start"))["code"] == "try_again"
    monkeypatch.setattr(lane, "write", write)
    monkeypatch.setattr(lane, "fetch", unread)
    before = lane.facilitated
    await fac.do("workshop.start")
    monkeypatch.setattr(lane, "fetch", fetch)
    assert lane.facilitated == before
    await fac.do("phase.next")
    assert lane.facilitated == before + 1
