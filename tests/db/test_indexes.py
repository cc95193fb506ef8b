"""The frequent commands' counts are answered from an index, not a scan of the workshop.

A vote counts the card's voters and a new note counts the notes in its area. Without
their indexes SQLite found the workshop's rows by `workshop_id` and read every one of
them: a vote in a room of 25 that has sorted 40 cards read 1,000 votes. Checked with
SQLite's query plan for the statements the commands run (PostgreSQL's planner picks
by its statistics, so it is not pinned there).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy.dialects import sqlite

from app.db.engine import make_engine
from app.db.migrate import upgrade
from app.services.live.participation import _NOTES_IN_AREA
from app.services.live.results import _VOTERS_ON_CARD


def _plan(database: Path, statement: Any) -> str:
    compiled = statement.compile(dialect=sqlite.dialect())
    values = [None] * len(compiled.positiontup)
    with sqlite3.connect(database) as db:
        rows = db.execute(f"EXPLAIN QUERY PLAN {compiled.string}", values).fetchall()
    return "\n".join(str(row[3]) for row in rows)


async def test_vote_and_note_counts_use_their_indexes(tmp_path: Path) -> None:
    database = tmp_path / "plans.db"
    engine = make_engine(f"sqlite+aiosqlite:///{database}")
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()
    voters = _plan(database, _VOTERS_ON_CARD)
    assert "COVERING INDEX ix_cardvote_workshop_id_card_id (workshop_id=? AND card_id=?)" in (
        voters
    ), voters
    notes = _plan(database, _NOTES_IN_AREA)
    assert "ix_note_workshop_id_function_id_area (workshop_id=? AND function_id=? AND area=?)" in (
        notes
    ), notes
