"""live command functions (PostgreSQL): participants' frequent commands in one round trip

Revision ID: 7d3e5a91c2b4
Revises: 589322ab81bc
Create Date: 2026-12-05 09:00:00.000000

On PostgreSQL a participant's card vote, level vote, new note, note move, dot and
dot taken back is one call of one of these functions, run as its own transaction (`app.services.live.pg_lane`):
the checks that need the database, the write, the count the event carries and the
event itself, all under the workshop's row lock, which is held only while the
function runs. Anything these functions refuse raises (`live: refused`) and the
command runs the usual way, which says exactly why; so they only ever accept.

The rules they check mirror `app.services.live.engine._context` and the handlers in
`app.services.live.participation`; the checks against the definition (which card
belongs to which core function, the board's areas and colours) are made in Python
and passed in as the phases the command is allowed in. tests/realtime/test_pg_lane.py
runs both paths on the same commands and compares the log and the rows.

SQLite has no such functions: there the lane does the same job
(`app.services.live.lane`).
"""
from typing import Sequence, Union

from alembic import op


# revision identifiers, used by Alembic.
revision: str = '7d3e5a91c2b4'
down_revision: Union[str, None] = '589322ab81bc'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


FUNCTIONS = [
    # The context of `engine._context` for a participant's write: the workshop row,
    # locked, with its next seq, if the workshop runs, input is open, the current
    # phase is one the command is allowed in and the participant is not removed.
    """
CREATE FUNCTION live_begin(p_wid varchar, p_pid varchar, p_phases integer[])
RETURNS workshop LANGUAGE plpgsql AS $$
DECLARE
    w workshop;
BEGIN
    UPDATE workshop SET seq = seq + 1
     WHERE id = p_wid AND state = 'running' AND NOT input_locked
       AND current_phase = ANY (p_phases)
       AND EXISTS (SELECT 1 FROM participant
                    WHERE id = p_pid AND workshop_id = p_wid AND removed_at IS NULL)
    RETURNING * INTO w;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'live: refused';
    END IF;
    RETURN w;
END $$
""",
    # `participation.vote_card`.
    """
CREATE FUNCTION live_card_vote(
    p_wid varchar, p_pid varchar, p_phases integer[], p_function varchar,
    p_card varchar, p_choice varchar, p_now timestamptz, p_actor varchar,
    OUT o_seq integer, OUT o_voters integer
) LANGUAGE plpgsql AS $$
DECLARE
    w workshop;
BEGIN
    SELECT * INTO w FROM live_begin(p_wid, p_pid, p_phases);
    IF w.revealed::jsonb ? ('cards:' || p_function) THEN
        RAISE EXCEPTION 'live: refused';
    END IF;
    INSERT INTO cardvote (workshop_id, participant_id, function_id, card_id, choice, updated_at)
    VALUES (p_wid, p_pid, p_function, p_card, p_choice, p_now)
    ON CONFLICT (workshop_id, participant_id, card_id)
    DO UPDATE SET choice = EXCLUDED.choice, updated_at = EXCLUDED.updated_at;
    SELECT count(*) INTO o_voters
      FROM cardvote v JOIN participant p ON p.id = v.participant_id
     WHERE v.workshop_id = p_wid AND v.card_id = p_card AND p.removed_at IS NULL;
    o_seq := w.seq;
    INSERT INTO event (workshop_id, seq, type, payload, actor, created_at)
    VALUES (p_wid, o_seq, 'card.voted', json_build_object(
        'function_id', p_function, 'card_id', p_card, 'participant_id', p_pid,
        'voters', o_voters, 'choice', p_choice), p_actor, p_now);
END $$
""",
    # `participation.vote_level`: p_functions[i] is the core function of phase
    # p_phases[i]. A function without a round yet is left to the usual path (which
    # opens round 1).
    """
CREATE FUNCTION live_level_vote(
    p_wid varchar, p_pid varchar, p_phases integer[], p_functions varchar[],
    p_level integer, p_now timestamptz, p_actor varchar,
    OUT o_seq integer, OUT o_function varchar, OUT o_round integer, OUT o_voters integer
) LANGUAGE plpgsql AS $$
DECLARE
    w workshop;
    v_revealed timestamptz;
BEGIN
    SELECT * INTO w FROM live_begin(p_wid, p_pid, p_phases);
    o_function := p_functions[array_position(p_phases, w.current_phase)];
    SELECT number, revealed_at INTO o_round, v_revealed FROM levelround
     WHERE workshop_id = p_wid AND function_id = o_function
     ORDER BY number DESC LIMIT 1;
    IF NOT FOUND OR v_revealed IS NOT NULL THEN
        RAISE EXCEPTION 'live: refused';
    END IF;
    INSERT INTO levelvote (workshop_id, participant_id, function_id, round, level, updated_at)
    VALUES (p_wid, p_pid, o_function, o_round, p_level, p_now)
    ON CONFLICT (workshop_id, participant_id, function_id, round)
    DO UPDATE SET level = EXCLUDED.level, updated_at = EXCLUDED.updated_at;
    SELECT count(*) INTO o_voters
      FROM levelvote v JOIN participant p ON p.id = v.participant_id
     WHERE v.workshop_id = p_wid AND v.function_id = o_function AND v.round = o_round
       AND p.removed_at IS NULL;
    o_seq := w.seq;
    INSERT INTO event (workshop_id, seq, type, payload, actor, created_at)
    VALUES (p_wid, o_seq, 'level.voted', json_build_object(
        'function_id', o_function, 'round', o_round, 'participant_id', p_pid,
        'voters', o_voters, 'level', p_level), p_actor, p_now);
END $$
""",
    # `participation.create_note`: p_functions[i] is the core function of phase
    # p_phases[i]; a note without a place takes the next free spot of its area, from
    # the table of spots `_free_spot` cycles through.
    """
CREATE FUNCTION live_note_create(
    p_wid varchar, p_pid varchar, p_phases integer[], p_functions varchar[],
    p_id varchar, p_area varchar, p_text varchar, p_colour varchar,
    p_x double precision, p_y double precision,
    p_spots_x double precision[], p_spots_y double precision[],
    p_now timestamptz, p_actor varchar,
    OUT o_seq integer, OUT o_function varchar,
    OUT o_x double precision, OUT o_y double precision
) LANGUAGE plpgsql AS $$
DECLARE
    w workshop;
    n integer;
BEGIN
    SELECT * INTO w FROM live_begin(p_wid, p_pid, p_phases);
    o_function := p_functions[array_position(p_phases, w.current_phase)];
    o_x := p_x;
    o_y := p_y;
    IF p_x IS NULL OR p_y IS NULL THEN
        SELECT count(*) INTO n FROM note
         WHERE workshop_id = p_wid AND function_id = o_function AND area = p_area;
        o_x := p_spots_x[n % cardinality(p_spots_x) + 1];
        o_y := p_spots_y[n % cardinality(p_spots_y) + 1];
    END IF;
    INSERT INTO note (id, workshop_id, function_id, area, text, colour, x, y, group_id,
                      author_id, facilitator_id, created_at, updated_at)
    VALUES (p_id, p_wid, o_function, p_area, p_text, p_colour, o_x, o_y, NULL,
            p_pid, NULL, p_now, p_now);
    o_seq := w.seq;
    INSERT INTO event (workshop_id, seq, type, payload, actor, created_at)
    VALUES (p_wid, o_seq, 'note.created', json_build_object('note', json_build_object(
        'id', p_id, 'function_id', o_function, 'area', p_area, 'text', p_text,
        'colour', p_colour, 'x', o_x, 'y', o_y, 'group_id', NULL, 'author_id', p_pid,
        'dots', 0)), p_actor, p_now);
END $$
""",
    # `participation.move_note`: to another area (p_area), the note leaves its group.
    """
CREATE FUNCTION live_note_move(
    p_wid varchar, p_pid varchar, p_phases integer[], p_note varchar,
    p_x double precision, p_y double precision, p_area varchar,
    p_now timestamptz, p_actor varchar,
    OUT o_seq integer, OUT o_area varchar
) LANGUAGE plpgsql AS $$
DECLARE
    w workshop;
BEGIN
    SELECT * INTO w FROM live_begin(p_wid, p_pid, p_phases);
    SELECT area INTO o_area FROM note WHERE id = p_note AND workshop_id = p_wid;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'live: refused';
    END IF;
    IF p_area IS NOT NULL AND p_area <> o_area THEN
        UPDATE note SET x = p_x, y = p_y, updated_at = p_now, area = p_area, group_id = NULL
         WHERE id = p_note;
        o_area := p_area;
    ELSE
        UPDATE note SET x = p_x, y = p_y, updated_at = p_now WHERE id = p_note;
    END IF;
    o_seq := w.seq;
    INSERT INTO event (workshop_id, seq, type, payload, actor, created_at)
    VALUES (p_wid, o_seq, 'note.moved', json_build_object(
        'note_id', p_note, 'x', p_x, 'y', p_y, 'area', o_area), p_actor, p_now);
END $$
""",
    # `participation.add_dot`: p_keys, p_functions, p_areas and p_budgets describe
    # phase p_phases[i] (its key, core function, area or NULL, and dot budget or NULL);
    # the budget is `participation.dot_budget`'s.
    """
CREATE FUNCTION live_dot_add(
    p_wid varchar, p_pid varchar, p_phases integer[], p_keys varchar[],
    p_functions varchar[], p_areas varchar[], p_budgets integer[], p_note varchar,
    p_now timestamptz, p_actor varchar,
    OUT o_seq integer, OUT o_dots integer, OUT o_left integer
) LANGUAGE plpgsql AS $$
DECLARE
    w workshop;
    i integer;
    v_function varchar;
    v_area varchar;
    v_budget integer;
    v_used integer;
BEGIN
    SELECT * INTO w FROM live_begin(p_wid, p_pid, p_phases);
    i := array_position(p_phases, w.current_phase);
    SELECT function_id, area INTO v_function, v_area
      FROM note WHERE id = p_note AND workshop_id = p_wid;
    IF NOT FOUND OR v_function <> p_functions[i]
       OR (coalesce(p_areas[i], '') <> '' AND v_area <> p_areas[i]) THEN
        RAISE EXCEPTION 'live: refused';
    END IF;
    v_budget := coalesce((w.phase_budgets ->> p_keys[i])::integer, p_budgets[i], w.dot_budget);
    SELECT count(*) INTO v_used FROM dotvote
     WHERE workshop_id = p_wid AND participant_id = p_pid AND phase_key = p_keys[i];
    IF v_used >= v_budget THEN
        RAISE EXCEPTION 'live: refused';
    END IF;
    SELECT count(*) + 1 INTO o_dots FROM dotvote WHERE note_id = p_note;
    INSERT INTO dotvote (workshop_id, note_id, participant_id, phase_key, created_at)
    VALUES (p_wid, p_note, p_pid, p_keys[i], p_now);
    o_left := v_budget - v_used - 1;
    o_seq := w.seq;
    INSERT INTO event (workshop_id, seq, type, payload, actor, created_at)
    VALUES (p_wid, o_seq, 'dot.added', json_build_object(
        'note_id', p_note, 'participant_id', p_pid, 'dots', o_dots), p_actor, p_now);
END $$
""",
    # `participation.remove_dot`: the phases as for `live_dot_add`.
    """
CREATE FUNCTION live_dot_remove(
    p_wid varchar, p_pid varchar, p_phases integer[], p_keys varchar[],
    p_budgets integer[], p_note varchar, p_now timestamptz, p_actor varchar,
    OUT o_seq integer, OUT o_dots integer, OUT o_left integer
) LANGUAGE plpgsql AS $$
DECLARE
    w workshop;
    i integer;
    v_dot integer;
    v_used integer;
BEGIN
    SELECT * INTO w FROM live_begin(p_wid, p_pid, p_phases);
    i := array_position(p_phases, w.current_phase);
    SELECT id INTO v_dot FROM dotvote
     WHERE note_id = p_note AND participant_id = p_pid AND phase_key = p_keys[i] LIMIT 1;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'live: refused';
    END IF;
    SELECT count(*) INTO v_used FROM dotvote
     WHERE workshop_id = p_wid AND participant_id = p_pid AND phase_key = p_keys[i];
    SELECT count(*) - 1 INTO o_dots FROM dotvote WHERE note_id = p_note;
    DELETE FROM dotvote WHERE id = v_dot;
    o_left := coalesce((w.phase_budgets ->> p_keys[i])::integer, p_budgets[i], w.dot_budget)
              - (v_used - 1);
    o_seq := w.seq;
    INSERT INTO event (workshop_id, seq, type, payload, actor, created_at)
    VALUES (p_wid, o_seq, 'dot.removed', json_build_object(
        'note_id', p_note, 'participant_id', p_pid, 'dots', o_dots), p_actor, p_now);
END $$
""",
]

SIGNATURES = [
    "live_dot_remove(varchar, varchar, integer[], varchar[], integer[], varchar, timestamptz,"
    " varchar)",
    "live_level_vote(varchar, varchar, integer[], varchar[], integer, timestamptz, varchar)",
    "live_dot_add(varchar, varchar, integer[], varchar[], varchar[], varchar[], integer[],"
    " varchar, timestamptz, varchar)",
    "live_note_move(varchar, varchar, integer[], varchar, double precision,"
    " double precision, varchar, timestamptz, varchar)",
    "live_note_create(varchar, varchar, integer[], varchar[], varchar, varchar, varchar,"
    " varchar, double precision, double precision, double precision[],"
    " double precision[], timestamptz, varchar)",
    "live_card_vote(varchar, varchar, integer[], varchar, varchar, varchar, timestamptz,"
    " varchar)",
    "live_begin(varchar, varchar, integer[])",
]


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for sql in FUNCTIONS:
        op.execute(sql)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for signature in SIGNATURES:
        op.execute(f"DROP FUNCTION IF EXISTS {signature}")
