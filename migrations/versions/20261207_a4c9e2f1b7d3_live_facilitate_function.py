"""live facilitate function (PostgreSQL): a facilitator's command in one write

Revision ID: a4c9e2f1b7d3
Revises: 7d3e5a91c2b4
Create Date: 2026-12-07 20:00:00.000000

On PostgreSQL a facilitator's command usually runs as five or six statements in one
transaction (`app.services.live.engine`), holding the workshop's row lock from the
second to the last. `live_facilitate` lets the lane (`app.services.live.pg_facilitation`)
write one in a single call instead: the command is worked out in Python against the
workshop row as read just before, and the function writes the workshop's changed
columns and the event, numbered with the workshop's next seq, only if the row's
columns are still the ones read (`p_expected`; all but the seq: participants'
commands bump only that) and, when the command read more than the row (a reveal
counts votes: `p_seq`), only if the seq is still the one read, that is if no command
of the workshop was committed in between. Otherwise it refuses (`live: refused`)
with nothing written, and the command runs the usual way.

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

# Of those, the ones of type json. A JSON null is stored as JSON ('null'), as
# SQLAlchemy stores it, and read back as None like an SQL NULL: these are written
# from the JSON given, and compared as jsonb, either null counting as 'null'.
JSON_COLUMNS = ("revealed", "phase_budgets", "spotlight")


def _set(name: str) -> str:
    new = f"(p_changes -> '{name}')::json" if name in JSON_COLUMNS else f"c.{name}"
    return f"{name} = CASE WHEN p_changes ? '{name}' THEN {new} ELSE w.{name} END"


def _same(name: str) -> str:
    if name in JSON_COLUMNS:
        return (
            f"coalesce(p_expected -> '{name}', 'null') = coalesce(w.{name}::jsonb, 'null')"
        )
    return f"e.{name} IS NOT DISTINCT FROM w.{name}"


_SETS = ",\n        ".join(_set(name) for name in COLUMNS)
_SAME = "\n       AND ".join(_same(name) for name in COLUMNS)

FUNCTION = f"""
CREATE FUNCTION live_facilitate(
    p_wid varchar, p_seq integer, p_expected jsonb, p_changes jsonb, p_type varchar,
    p_payload json, p_now timestamptz, p_actor varchar, OUT o_seq integer
) LANGUAGE plpgsql AS $$
DECLARE
    e workshop;
    c workshop;
BEGIN
    e := jsonb_populate_record(NULL::workshop, p_expected);
    c := jsonb_populate_record(NULL::workshop, p_changes);
    UPDATE workshop AS w SET seq = w.seq + 1,
        {_SETS}
     WHERE w.id = p_wid AND w.state <> 'ended' AND (p_seq IS NULL OR w.seq = p_seq - 1)
       AND {_SAME}
    RETURNING w.seq INTO o_seq;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'live: refused';
    END IF;
    INSERT INTO event (workshop_id, seq, type, payload, actor, created_at)
    VALUES (p_wid, o_seq, p_type, p_payload, p_actor, p_now);
END $$
"""

SIGNATURE = "live_facilitate(varchar, integer, jsonb, jsonb, varchar, json, timestamptz, varchar)"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(FUNCTION)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"DROP FUNCTION IF EXISTS {SIGNATURE}")
