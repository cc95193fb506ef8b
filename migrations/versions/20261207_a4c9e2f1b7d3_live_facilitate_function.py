"""live facilitate function (PostgreSQL): a facilitator's command in one write

Revision ID: a4c9e2f1b7d3
Revises: 7d3e5a91c2b4
Create Date: 2026-12-07 20:00:00.000000

On PostgreSQL a facilitator's command usually runs as five or six statements in one
transaction (`app.services.live.engine`), holding the workshop's row lock from the
second to the last. `live_facilitate` lets the lane (`app.services.live.pg_facilitation`)
write one in a single call instead: the command is worked out in Python against the
workshop as read just before (its seq included), and the function writes the
workshop's changed columns and the event, numbered seq + 1, only if the workshop's
seq is still the one read, that is if no command of the workshop was committed in
between. Otherwise it refuses (`live: refused`) with nothing written, and the
command runs the usual way.

`p_changes` holds the changed columns by name, as JSON; a column it does not name
keeps its value. Every column but the id, the seq and the definition can be named
(tests/realtime/test_pg_facilitation.py keeps the list and the model in step).

SQLite has no such function.
"""

from typing import Sequence, Union

from alembic import op


# revision identifiers, used by Alembic.
revision: str = "a4c9e2f1b7d3"
down_revision: Union[str, None] = "7d3e5a91c2b4"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

# The workshop's columns a facilitator's command may change, as of this revision.
COLUMNS = (
    "facilitator_id",
    "title",
    "definition_id",
    "join_code",
    "state",
    "current_phase",
    "anonymous",
    "dot_budget",
    "input_locked",
    "revealed",
    "phase_budgets",
    "timer_ends_at",
    "timer_remaining_s",
    "spotlight",
    "created_at",
    "started_at",
    "ended_at",
)

_SETS = ",\n        ".join(
    f"{name} = CASE WHEN p_changes ? '{name}' THEN c.{name} ELSE w.{name} END" for name in COLUMNS
)

FUNCTION = f"""
CREATE FUNCTION live_facilitate(
    p_wid varchar, p_seq integer, p_changes jsonb, p_type varchar, p_payload json,
    p_now timestamptz, p_actor varchar, OUT o_seq integer
) LANGUAGE plpgsql AS $$
DECLARE
    c workshop;
BEGIN
    c := jsonb_populate_record(NULL::workshop, p_changes);
    UPDATE workshop AS w SET seq = p_seq,
        {_SETS}
     WHERE w.id = p_wid AND w.seq = p_seq - 1 AND w.state <> 'ended';
    IF NOT FOUND THEN
        RAISE EXCEPTION 'live: refused';
    END IF;
    o_seq := p_seq;
    INSERT INTO event (workshop_id, seq, type, payload, actor, created_at)
    VALUES (p_wid, p_seq, p_type, p_payload, p_actor, p_now);
END $$
"""

SIGNATURE = "live_facilitate(varchar, integer, jsonb, varchar, json, timestamptz, varchar)"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(FUNCTION)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"DROP FUNCTION IF EXISTS {SIGNATURE}")
