"""Participants' frequent commands on PostgreSQL in one round trip each.

On PostgreSQL the usual path (`LiveService._transaction`) sends a command as five or
six statements, each a round trip through SQLAlchemy and asyncpg: `BEGIN`, the
workshop row with its next seq, the handler's one or two statements, the event's
`INSERT`, `COMMIT`. The workshop's row lock is held from the second to the last, so
one busy room's rate is bounded by four round trips, and every round trip hands
the command back to a loop that is busy fanning out.

`PgLane` sends a card or level vote, a new note, a note move, a dot or a dot taken
back as one call of a server-side function (migration `7d3e5a91c2b4`) on a
connection of its own (bare asyncpg, no SQLAlchemy layers, no check at checkout),
run as its own transaction: the row lock is held only while the function runs on
the server.

What the functions check is what needs the database (the workshop runs, input is
open, the participant is not removed, the current phase is one the command is
allowed in, the note exists, the dots left). What needs only the definition (which
core function a card belongs to, the board's areas and colours, the note's text) is
checked here first, and turned into the phases the command is allowed in. A
function refuses by raising, with nothing written; this lane never says why: the
command then runs the usual way, which refuses it with the exact reason (or accepts
it, if the room changed in between). So this lane only ever accepts, and the
messages it builds are the handlers' (tests/realtime/test_pg_lane.py compares the
two paths' logs and rows).

The same connections read and write for most of a facilitator's commands
(`fetch`, `write`; `app.services.live.pg_facilitation`) and admit sockets (`admit`).

The connections open when the server starts (`warm`), each with its server process
warmed (`_open`): a cold one made a workshop's first commands several times slower.
A connection that cannot be opened sends the command the usual way (nothing was
sent), as does one the server has ended whose close has not arrived yet
(`ended_by_server`), and one the server ends in place of answering the call
(`shut_down_unanswered`: a call sent before the server's last message arrived). One
that fails otherwise during a call may or may not have committed it: that is raised
as `LaneUnavailable` (an `OSError`), and the engine answers `try_again`, as it does
when the usual path's `COMMIT` fails.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.types import new_id
from app.domain.definitions import Definition, Phase, PhaseKind, UnknownIdError
from app.realtime import messages as m
from app.services.errors import Invalid
from app.services.live.context import Actor
from app.services.live.participation import SPOTS
from app.services.live.workshop_row import COLUMNS
from app.services.workshops import clean_text

log = logging.getLogger(__name__)

# The server's answer to a command it does not accept (`RAISE EXCEPTION` in the
# functions): the usual path says why.
REFUSED = "live: refused"
# Connections per worker: commands of different workshops run side by side.
SIZE = 3
# A call that has not answered by then is given up (and its connection closed).
TIMEOUT_S = 10.0

# The functions' calls (migration 7d3e5a91c2b4). Each takes the workshop and the
# participant first, the time and the actor's log tag last.
CARD_VOTE = "SELECT o_seq, o_voters FROM live_card_vote($1, $2, $3, $4, $5, $6, $7, $8)"
LEVEL_VOTE = (
    "SELECT o_seq, o_function, o_round, o_voters FROM live_level_vote($1, $2, $3, $4, $5, $6, $7)"
)
NOTE_CREATE = (
    "SELECT o_seq, o_function, o_x, o_y FROM live_note_create("
    "$1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
)
NOTE_MOVE = "SELECT o_seq, o_area FROM live_note_move($1, $2, $3, $4, $5, $6, $7, $8, $9)"
DOT_ADD = "SELECT o_seq, o_dots, o_left FROM live_dot_add($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
DOT_REMOVE = "SELECT o_seq, o_dots, o_left FROM live_dot_remove($1, $2, $3, $4, $5, $6, $7, $8)"
# A facilitator's command, worked out beforehand (migration a4c9e2f1b7d3, pg_facilitation.py).
FACILITATE = "SELECT o_seq FROM live_facilitate($1, $2, $3, $4, $5, $6, $7, $8)"
CALLS = (CARD_VOTE, LEVEL_VOTE, NOTE_CREATE, NOTE_MOVE, DOT_ADD, DOT_REMOVE, FACILITATE)


# Who may open a socket (app.realtime.socket): the workshop row's few columns and,
# for a participant ($2), whether they are in it and not removed (NULL: no such
# participant there). Always one row, so that a batch's rows line up with its calls:
# no such workshop gives a NULL seq.
ADMIT = (
    "SELECT w.seq, w.anonymous, w.facilitator_id,"
    " (SELECT p.removed_at IS NULL FROM participant AS p"
    " WHERE p.id = $2 AND p.workshop_id = $1) AS participant_ok"
    " FROM (SELECT 1) AS one LEFT JOIN workshop AS w ON w.id = $1"
)


# The workshop row as a facilitator's command reads it (`engine._context`, without
# taking the next seq): pg_facilitation.py.
WORKSHOP = f"SELECT {', '.join(COLUMNS)} FROM workshop WHERE id = $1"  # noqa: S608 - column names


def _warm_call(sql: str) -> str:
    function = sql.split(" FROM ")[1].split("(")[0]
    nulls = ", ".join(["NULL"] * sql.count("$"))
    return f"  BEGIN PERFORM {function}({nulls}); EXCEPTION WHEN raise_exception THEN NULL; END;\n"


# Each function called once for no workshop, which it refuses; caught in the block,
# so that the server logs no error for it (`PgLane._open`).
WARM = "DO $$ BEGIN\n" + "".join(_warm_call(sql) for sql in CALLS) + " END $$"

_SPOTS_X = [x for x, _y in SPOTS]
_SPOTS_Y = [y for _x, y in SPOTS]


# What a call that waited gets when its batch was refused as a whole: it goes alone.
_ALONE: Any = object()
# The calls waiting for one under way: each one's arguments and where its row goes.
_Waiting = list[tuple[tuple[Any, ...], asyncio.Future[asyncpg.Record | None]]]


class LaneUnavailable(OSError):
    """The lane's connection failed: nothing is known to have been written."""


@dataclass(frozen=True, slots=True)
class Call:
    """One command as a function call, and how its answer becomes the handler's event."""

    sql: str
    args: tuple[Any, ...]
    event: str
    # (the function's answer) -> (the event's payload, the sender's result)
    finish: Callable[[asyncpg.Record], tuple[dict[str, Any], dict[str, Any]]]


def _allowed(phases: tuple[Phase, ...], kind: PhaseKind) -> list[int]:
    return [i for i, phase in enumerate(phases) if phase.kind is kind]


def _card_vote(
    pid: str, cmd: m.VoteCard, definition: Definition, phases: tuple[Phase, ...]
) -> Call | None:
    try:
        function_id = definition.function_of_card(cmd.card_id).id
    except UnknownIdError:
        return None
    allowed = [i for i in _allowed(phases, PhaseKind.SORT) if phases[i].function_id == function_id]
    if not allowed:
        return None

    def finish(row: asyncpg.Record) -> tuple[dict[str, Any], dict[str, Any]]:
        payload = {
            "function_id": function_id,
            "card_id": cmd.card_id,
            "participant_id": pid,
            "voters": row["o_voters"],
            "choice": cmd.choice,
        }
        return payload, {"card_id": cmd.card_id, "choice": cmd.choice}

    return Call(
        CARD_VOTE,
        (allowed, function_id, cmd.card_id, cmd.choice),
        "card.voted",
        finish,
    )


def _level_vote(
    pid: str, cmd: m.VoteLevel, definition: Definition, phases: tuple[Phase, ...]
) -> Call | None:
    allowed = _allowed(phases, PhaseKind.LEVEL_VOTE)
    if not allowed or cmd.level >= len(definition.scale):
        return None
    functions = [phases[i].function_id for i in allowed]

    def finish(row: asyncpg.Record) -> tuple[dict[str, Any], dict[str, Any]]:
        function_id, number = row["o_function"], row["o_round"]
        payload = {
            "function_id": function_id,
            "round": number,
            "participant_id": pid,
            "voters": row["o_voters"],
            "level": cmd.level,
        }
        return payload, {"function_id": function_id, "round": number, "level": cmd.level}

    return Call(
        LEVEL_VOTE,
        (allowed, functions, cmd.level),
        "level.voted",
        finish,
    )


def _note_create(
    pid: str, cmd: m.CreateNote, definition: Definition, phases: tuple[Phase, ...]
) -> Call | None:
    allowed = _allowed(phases, PhaseKind.REFLECT)
    board = definition.board
    colour = cmd.colour or board.colours[0]
    if not allowed or colour not in board.colours:
        return None
    if all(area.id != cmd.area for area in board.areas):
        return None
    try:
        text = clean_text(cmd.text, field="note text", max_length=500)
    except Invalid:
        return None
    note_id = new_id()
    functions = [phases[i].function_id for i in allowed]

    def finish(row: asyncpg.Record) -> tuple[dict[str, Any], dict[str, Any]]:
        note = m.NoteOut(
            id=note_id,
            function_id=row["o_function"],
            area=cmd.area,
            text=text,
            colour=colour,
            x=row["o_x"],
            y=row["o_y"],
            group_id=None,
            author_id=pid,
            dots=0,
        ).model_dump()
        return {"note": note}, {"note_id": note_id}

    return Call(
        NOTE_CREATE,
        (allowed, functions, note_id, cmd.area, text, colour, cmd.x, cmd.y, _SPOTS_X, _SPOTS_Y),
        "note.created",
        finish,
    )


def _note_move(
    _pid: str, cmd: m.MoveNote, definition: Definition, phases: tuple[Phase, ...]
) -> Call | None:
    allowed = _allowed(phases, PhaseKind.REFLECT)
    if not allowed:
        return None
    if cmd.area is not None and all(area.id != cmd.area for area in definition.board.areas):
        return None

    def finish(row: asyncpg.Record) -> tuple[dict[str, Any], dict[str, Any]]:
        return {"note_id": cmd.note_id, "x": cmd.x, "y": cmd.y, "area": row["o_area"]}, {}

    return Call(
        NOTE_MOVE,
        (allowed, cmd.note_id, cmd.x, cmd.y, cmd.area),
        "note.moved",
        finish,
    )


def _dot(
    pid: str, cmd: m.AddDot | m.RemoveDot, _definition: Definition, phases: tuple[Phase, ...]
) -> Call | None:
    """A dot added (`live_dot_add`) or taken back (`live_dot_remove`): each prioritise
    phase's key, core function, area and budget go in as arrays beside its index."""
    allowed = _allowed(phases, PhaseKind.PRIORITISE)
    if not allowed:
        return None
    chosen = [phases[i] for i in allowed]
    keys = [phase.key for phase in chosen]
    budgets = [phase.dot_budget for phase in chosen]

    def finish(row: asyncpg.Record) -> tuple[dict[str, Any], dict[str, Any]]:
        payload = {"note_id": cmd.note_id, "participant_id": pid, "dots": row["o_dots"]}
        return payload, {"dots_left": row["o_left"]}

    if cmd.type == "dot.remove":
        return Call(DOT_REMOVE, (allowed, keys, budgets, cmd.note_id), "dot.removed", finish)
    functions = [phase.function_id for phase in chosen]
    areas = [phase.area or None for phase in chosen]
    args = (allowed, keys, functions, areas, budgets, cmd.note_id)
    return Call(DOT_ADD, args, "dot.added", finish)


PREPARE: dict[str, Callable[[str, Any, Definition, tuple[Phase, ...]], Call | None]] = {
    "card.vote": _card_vote,
    "level.vote": _level_vote,
    "note.create": _note_create,
    "note.move": _note_move,
    "dot.add": _dot,
    "dot.remove": _dot,
}


@dataclass(frozen=True, slots=True)
class Done:
    """A command the lane wrote and committed: its event (as `Ctx.emit` makes it) and
    the sender's result."""

    event: dict[str, Any]
    result: dict[str, Any]


class PgLane:
    """A few connections of the worker's own, for `PREPARE`'s commands (see above)."""

    def __init__(self, connect: Callable[[], Awaitable[asyncpg.Connection]], size: int = SIZE):
        self._connect = connect
        self._size = size
        # Each slot holds an open connection, or None until one is needed.
        self._slots: asyncio.Queue[asyncpg.Connection | None] = asyncio.Queue()
        for _ in range(size):
            self._slots.put_nowait(None)
        self.enabled = True
        self.calls = 0  # participants' commands written here (tests read it)
        self.facilitated = 0  # facilitators' commands written here (pg_facilitation.py)
        # Per (workshop, function) with a call under way: the calls waiting for it.
        self._waiting: dict[tuple[str, str], _Waiting] = {}
        self._batches: set[asyncio.Task[None]] = set()

    async def run(
        self,
        actor: Actor,
        command: Any,
        definition: tuple[Definition, tuple[Phase, ...]] | None,
        now: datetime,
    ) -> Done | None:
        """Write and commit `command`; None: not done here (nothing was written), run it
        the usual way."""
        prepare = PREPARE.get(command.type)
        pid = actor.participant_id
        if prepare is None or pid is None or definition is None or not self.enabled:
            return None
        call = prepare(pid, command, *definition)
        if call is None:
            return None
        args = (actor.workshop_id, pid, *call.args, now, actor.log_tag)
        row = await self._call_with_others((actor.workshop_id, call.sql), args)
        if row is None:
            return None
        payload, result = call.finish(row)
        event = {
            "type": call.event,
            "seq": row["o_seq"],
            "actor": actor.wire,
            "at": now.isoformat(),
            "cid": command.cid,
            "ts": command.ts,
            **payload,
        }
        self.calls += 1
        return Done(event, result)

    async def admit(self, workshop_id: str, participant_id: str | None) -> asyncpg.Record | None:
        """`ADMIT`'s row for a socket that opens; None: not read here (nothing is
        known), read it the usual way.

        One round trip, and no transaction to begin and roll back around it: the
        usual path's two ORM reads made four. Sockets that open while one read is
        under way (a reconnect storm) are read together in the next one."""
        try:
            return await self._call_with_others(("", ADMIT), (workshop_id, participant_id or ""))
        except LaneUnavailable:
            return None

    async def fetch(self, sql: str, args: tuple[Any, ...]) -> list[asyncpg.Record] | None:
        """All rows of one read, outside any transaction; None: not read here (nothing
        is known), read it the usual way."""
        try:
            return await self._call(sql, [args], all_rows=True)
        except LaneUnavailable:
            return None

    async def write(self, sql: str, args: tuple[Any, ...]) -> asyncpg.Record | None:
        """One call as its own transaction; None: refused, nothing written. Raises
        `LaneUnavailable` when it may or may not have been committed."""
        return await self._call_one(sql, args)

    async def _call_with_others(
        self, key: tuple[str, str], args: tuple[Any, ...]
    ) -> asyncpg.Record | None:
        """One call, or one of a batch: while a call of the same function for the same
        workshop is under way, the next ones wait and then go together (`_batch`)."""
        sql = key[1]
        waiting = self._waiting.get(key)
        if waiting is None:
            self._waiting[key] = []  # under way, no one waiting yet
            try:
                return await self._call_one(sql, args)
            finally:
                self._next_batch(key)
        reply: asyncio.Future[asyncpg.Record | None] = asyncio.get_running_loop().create_future()
        waiting.append((args, reply))
        try:
            row = await reply
        except asyncio.CancelledError:
            if self._waiting.get(key) is waiting:
                # Its batch has not gone yet: it never will, with this call in it.
                waiting.remove((args, reply))
            raise
        if row is _ALONE:
            # The batch was refused as a whole: this call on its own.
            return await self._call_one(sql, args)
        return row

    async def _call_one(self, sql: str, args: tuple[Any, ...]) -> asyncpg.Record | None:
        rows = await self._call(sql, [args])
        return None if rows is None else rows[0]

    def _next_batch(self, key: tuple[str, str]) -> None:
        waiting = self._waiting.pop(key)
        if waiting:
            self._waiting[key] = []
            task = asyncio.create_task(self._batch(key, waiting), name="live-lane-batch")
            self._batches.add(task)
            task.add_done_callback(self._batches.discard)

    async def _batch(
        self,
        key: tuple[str, str],
        waiting: _Waiting,
    ) -> None:
        """The calls that waited, in one transaction (one round trip, one commit)."""
        try:
            rows = await self._call(key[1], [args for args, _reply in waiting])
        except Exception as exc:
            _fail(waiting, exc)
        except BaseException:
            _fail(waiting, LaneUnavailable("stopped"))
            raise
        else:
            for i, (_args, reply) in enumerate(waiting):
                if not reply.done():
                    reply.set_result(_ALONE if rows is None else rows[i])
        finally:
            self._next_batch(key)

    async def _call(
        self, sql: str, calls: list[tuple[Any, ...]], *, all_rows: bool = False
    ) -> list[asyncpg.Record] | None:
        """The calls in one transaction; None: refused (one of them), nothing written.
        With `all_rows`, the one call's rows."""
        connection = await self._slots.get()
        try:
            connection = await self._ready(connection)
        except BaseException:
            self._slots.put_nowait(None)
            raise
        if connection is None:
            # Nothing was sent: the usual path (whose pool may well connect).
            self._slots.put_nowait(None)
            return None
        try:
            rows: list[asyncpg.Record]
            if all_rows:
                rows = await connection.fetch(sql, *calls[0], timeout=TIMEOUT_S)
            elif len(calls) == 1:
                rows = [await connection.fetchrow(sql, *calls[0], timeout=TIMEOUT_S)]
            else:
                # One implicit transaction for all (the extended protocol's one Sync).
                rows = await connection.fetchmany(sql, calls, timeout=TIMEOUT_S)
        except asyncpg.RaiseError as exc:
            if getattr(exc, "message", None) != REFUSED:
                log.warning("live function failed: %s", exc)
            return None
        except asyncpg.UndefinedFunctionError as exc:
            # A database without migrations 7d3e5a91c2b4 and a4c9e2f1b7d3: the usual
            # path from now on.
            log.warning("live functions missing (%s): commands take the usual path", exc)
            self.enabled = False
            return None
        except (
            asyncpg.PostgresConnectionError,
            asyncpg.InterfaceError,
            OSError,
            TimeoutError,
        ) as exc:
            _discard(connection)
            connection = None
            if shut_down_unanswered(exc):
                # Not committed: the usual path (whose pool opens a new connection).
                log.info("a live lane connection was shut down by the server: %s", exc)
                return None
            raise LaneUnavailable(str(exc)) from exc
        except asyncpg.InternalClientError as exc:
            _discard(connection)
            connection = None
            if ended_by_server(exc):
                # Nothing was sent: the usual path (whose pool opens a new connection).
                log.info("a live lane connection was ended by the server: %s", exc)
                return None
            raise LaneUnavailable(str(exc)) from exc
        except asyncpg.PostgresError as exc:
            # Anything else the server refused (a row deleted in between, say): the
            # transaction rolled back whole; the usual path sorts it out.
            log.info("the server refused a lane statement with %s: %s", type(exc).__name__, exc)
            return None
        except BaseException:
            # Cancelled mid-call: the connection's state is unknown.
            _discard(connection)
            connection = None
            raise
        finally:
            self._slots.put_nowait(connection)
        return rows

    async def warm(self) -> None:
        """Open the lane's connections now (`_open`), rather than on first use.

        Waits at most `TIMEOUT_S`; a connection not open by then is opened on first
        use, as before."""
        try:
            async with asyncio.timeout(TIMEOUT_S):
                await asyncio.gather(*(self._open_idle() for _ in range(self._size)))
        except TimeoutError:
            log.warning("the live lane's connections did not open in %s s", TIMEOUT_S)

    async def _open_idle(self) -> None:
        connection = await self._slots.get()
        try:
            connection = await self._ready(connection)
        finally:
            self._slots.put_nowait(connection)

    async def _ready(self, connection: asyncpg.Connection | None) -> asyncpg.Connection | None:
        """A slot's connection if open, else a new one (`_open`); None: none could be
        opened."""
        if connection is not None and not connection.is_closed():
            return connection
        try:
            return await self._open()
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
            log.warning("the live lane could not connect: %s", exc)
            return None

    async def _open(self) -> asyncpg.Connection:
        """A new connection, its server process warmed.

        A server process compiles each function on its first call there and plans its
        statements on their first run, and asyncpg looks up the types of each call on
        its first use: a workshop's first commands on each new connection paid for it
        all (12-17 ms each in a room of 100, against 2-6 ms after; docs/benchmarks.md,
        change 38). Here each function is called once for no workshop, which it
        refuses with nothing written (`WARM`), and each call is prepared."""
        connection = await self._connect()
        try:
            # JSON values decoded as SQLAlchemy's asyncpg dialect decodes them: the
            # facilitators' reads (pg_facilitation.py) take them as the usual path
            # does. A connection without it is not used.
            await connection.set_type_codec(
                "json", schema="pg_catalog", encoder=str, decoder=json.loads
            )
        except BaseException:
            _discard(connection)
            raise
        try:
            await connection.execute(WARM, timeout=TIMEOUT_S)
            for sql in (ADMIT, WORKSHOP, *CALLS):
                await connection.prepare(sql, timeout=TIMEOUT_S)
        except asyncpg.UndefinedFunctionError:
            pass  # no functions (an older database): the first call finds out
        except asyncpg.PostgresConnectionError:
            _discard(connection)
            raise
        except asyncpg.PostgresError as exc:
            # Refused by the server (say a role without the right to run a DO block):
            # the connection works, only cold.
            log.warning("the live lane could not warm a connection: %s", exc)
        except BaseException:
            _discard(connection)
            raise
        return connection

    async def close(self) -> None:
        for task in list(self._batches):
            task.cancel()
        while not self._slots.empty():
            connection = self._slots.get_nowait()
            if connection is not None:
                _discard(connection)


def ended_by_server(exc: asyncpg.InternalClientError) -> bool:
    """Whether asyncpg refused to start a call, with nothing sent, on a connection the
    server has ended.

    A server that ends a connection (a restart, `pg_terminate_backend`) sends a last
    error and then closes the socket. asyncpg reads that error as a message it did not
    ask for, and refuses the next operation on the connection ("cannot switch to state
    ...") before writing anything, while the connection does not count as closed until
    the close arrives (tests/faults/test_pg_late_close.py holds that window open)."""
    message = str(exc)
    return message.startswith("cannot switch to state") or message == "not connected"


def shut_down_unanswered(exc: BaseException) -> bool:
    """Whether the server ended the connection with an administrator's shutdown
    (`pg_terminate_backend`, a fast shutdown or restart, a switchover) in place
    of answering the call: then the call did not commit.

    Such a shutdown (SIGTERM to the server process) takes effect only where the
    process checks for interrupts: while it waits for the next message, or while it
    runs a statement, whose transaction then rolls back. A commit holds interrupts off,
    and its reply (rows, completion, ready for the next query) is flushed before the
    process waits for the next message again, so a committed call is always answered
    before the last message. asyncpg raises the closed connection with that last
    message (SQLSTATE 57P01) as its cause, and nothing else: a connection cut any
    other way (a crash, the network) may have committed, and stays `LaneUnavailable`.
    tests/faults/test_pg_late_close.py holds the server's last message back until a
    call has gone."""
    return isinstance(exc, asyncpg.ConnectionDoesNotExistError) and isinstance(
        exc.__cause__, asyncpg.AdminShutdownError
    )


def _fail(
    waiting: _Waiting,
    exc: Exception,
) -> None:
    for _args, reply in waiting:
        if not reply.done():
            reply.set_exception(exc)


def _discard(connection: asyncpg.Connection | None) -> None:
    if connection is not None:
        connection.terminate()


def make_pg_lane(engine: AsyncEngine) -> PgLane | None:
    """The lane for an asyncpg engine (its URL and connect arguments); None elsewhere."""
    dialect = engine.sync_engine.dialect
    if dialect.name != "postgresql" or dialect.driver != "asyncpg":
        return None
    cargs, cparams = dialect.create_connect_args(engine.url)

    async def connect() -> asyncpg.Connection:
        return await asyncpg.connect(*cargs, **cparams)

    return PgLane(connect)
