"""Run one live command: check, write with its event, commit, then publish.

This is the only code that both writes and publishes. Events reach every client
(the sender too) through the hub; the sender's `ack` is sent only after commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from sqlalchemy import bindparam, true, update
from sqlalchemy import select as core_select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlalchemy.util import greenlet_spawn
from sqlmodel import Session, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.db import direct
from app.db.engine import connect_to_begin
from app.db.models import Participant, Workshop, table_of
from app.domain.definitions import Definition, Phase, definition_from_snapshot, expand_phases
from app.realtime import messages as m
from app.realtime.hub import Hub
from app.services.live import facilitation as fac
from app.services.live import participation as part
from app.services.live.context import Actor, Ctx, Handler, Rejected, utcnow
from app.services.live.lane import Lane, NeedsOrm
from app.services.live.pg_facilitation import facilitate
from app.services.live.pg_lane import PREPARE as PG_LANE_TYPES
from app.services.live.pg_lane import PgLane
from app.services.live.workshop_row import COLUMNS, WorkshopRow

log = logging.getLogger(__name__)

HANDLERS: dict[str, Handler] = {
    "workshop.start": fac.start,
    "phase.next": fac.next_phase,
    "phase.previous": fac.previous_phase,
    "phase.goto": fac.goto_phase,
    "timer.start": fac.start_timer,
    "timer.pause": fac.pause_timer,
    "timer.extend": fac.extend_timer,
    "input.lock": fac.lock_input,
    "input.unlock": fac.unlock_input,
    "votes.reveal": fac.reveal_votes,
    "votes.hide": fac.hide_votes,
    "level_round.open": fac.open_level_round,
    "card.settle": fac.settle_card,
    "level.record": fac.record_level,
    "anonymity.set": fac.set_anonymity,
    "spotlight.set": fac.set_spotlight,
    "dots.set_budget": fac.set_dot_budget,
    "participant.remove": fac.remove_participant,
    "workshop.end": fac.end_workshop,
    "card.vote": part.vote_card,
    "level.vote": part.vote_level,
    "note.create": part.create_note,
    "note.edit": part.edit_note,
    "note.move": part.move_note,
    "note.drag": part.drag_check,
    "note.recolour": part.recolour_note,
    "note.delete": part.delete_note,
    "group.create": part.create_group,
    "group.rename": part.rename_group,
    "group.delete": part.delete_group,
    "note.group": part.group_note,
    "dot.add": part.add_dot,
    "dot.remove": part.remove_dot,
}


# Participants' commands whose statements are all plans (`app.db.direct`): on SQLite
# they run on the lane (`app.services.live.lane`); tests/realtime/test_lane.py keeps
# this list true.
LANE_COMMANDS = frozenset({"card.vote", "note.create", "note.move", "dot.add", "dot.remove"})
# Facilitator commands whose statements are plans in the usual case (the workshop is a
# `WorkshopRow`, saved with a plan): tried on the lane every time. When one needs the
# ORM after all (entering or revealing a level vote loads its round, a spotlight on a
# note loads the note), it is rolled back and runs the usual way, and is not
# remembered as needing the ORM: the next one may well not. On PostgreSQL the same
# ones are tried on the PgLane (pg_facilitation.py).
LANE_TRIES = frozenset(
    {
        "workshop.start",
        "phase.next",
        "phase.previous",
        "phase.goto",
        "timer.start",
        "timer.pause",
        "timer.extend",
        "input.lock",
        "input.unlock",
        "votes.reveal",
        "votes.hide",
        "anonymity.set",
        "spotlight.set",
        "dots.set_budget",
        "workshop.end",
    }
)


# The workshop's columns that participants' commands read (`Ctx.workshop` is a plain
# row of these for them; tests/realtime cover every participant command).
PARTICIPANT_READS = (
    "id",
    "state",
    "current_phase",
    "seq",
    "input_locked",
    "revealed",
    "dot_budget",
    "phase_budgets",
)


def _context_statements() -> dict[tuple[bool, bool], Any]:
    """`_context`'s statement, by (write, facilitator): built once, values bound per call.

    The write form is `UPDATE ... RETURNING`. Neither reads the definition snapshot
    (about 12 KB of JSON that never changes, decoded on every load):
    `LiveService.definition` takes it from the `DefinitionCache`, and reads it only
    when the cache lacks it. All four are Core statements, run as plans.
    """
    workshop = table_of(Workshop)
    participant = table_of(Participant)
    wid: Any = bindparam("ctx_wid")
    standing = {
        False: select(participant.c.id)
        .where(
            participant.c.id == bindparam("ctx_pid"),
            participant.c.workshop_id == wid,
            participant.c.removed_at.is_(None),
        )
        .exists()
        .label("active"),
        True: true().label("active"),
    }
    statements: dict[tuple[bool, bool], Any] = {}
    for facilitator, active in standing.items():
        # Facilitator commands change the workshop row: every column, loaded as a
        # `WorkshopRow` and saved by its changes. Participants' commands only read
        # it: a plain row of the columns they use.
        names = COLUMNS if facilitator else PARTICIPANT_READS
        read = [workshop.c[name] for name in names]
        bump = update(workshop).where(workshop.c.id == wid).values(seq=workshop.c.seq + 1)
        statements[True, facilitator] = bump.returning(*read, active)
        statements[False, facilitator] = core_select(*read, active).where(workshop.c.id == wid)
    return statements


# A command that emitted nothing gives its number back.
_GIVE_BACK_SEQ = (
    update(table_of(Workshop))
    .where(table_of(Workshop).c.id == bindparam("ctx_wid"))
    .values(seq=bindparam("ctx_seq"))
)


_CONTEXT = _context_statements()


@dataclass
class Outcome:
    events: list[dict[str, Any]]
    result: dict[str, Any]
    seq: int | None


class DefinitionCache:
    """Workshop definitions are snapshots that never change: parse each once."""

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._items: dict[str, tuple[Definition, tuple[Phase, ...]]] = {}

    def get(self, workshop: Workshop) -> tuple[Definition, tuple[Phase, ...]]:
        found = self._items.get(workshop.id)
        if found is None:
            found = self.put(workshop.id, workshop.definition)
        return found

    def peek(self, workshop_id: str) -> tuple[Definition, tuple[Phase, ...]] | None:
        return self._items.get(workshop_id)

    def forget(self, workshop_id: str) -> None:
        self._items.pop(workshop_id, None)

    def put(self, workshop_id: str, snapshot: Any) -> tuple[Definition, tuple[Phase, ...]]:
        definition = definition_from_snapshot(snapshot)
        found = (definition, expand_phases(definition))
        if len(self._items) >= self._size:
            self._items.pop(next(iter(self._items)))
        self._items[workshop_id] = found
        return found


T = TypeVar("T")


class AtOnceSession:
    """The `AsyncSession` methods that command handlers use, run at once.

    A command runs whole inside one greenlet (`LiveService._transaction`) on one
    connection and transaction: there statements reach the async driver by
    themselves (SQLAlchemy's asyncio bridge), so these methods complete at once and
    the handlers, written for an `AsyncSession`, never suspend. An `AsyncSession`
    would start a greenlet, and hand back to the loop, for every statement.

    Prebuilt Core statements run on the connection's cursor (`app.db.direct`). An
    ORM `Session`, joined to the same transaction, is made only when a handler first
    needs one (facilitators' commands, and the rarer ones of participants).
    """

    __slots__ = ("_orm", "connection")

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self._orm: Session | None = None

    @property
    def sync(self) -> Session:
        if self._orm is None:
            self._orm = Session(
                bind=self.connection,
                expire_on_commit=False,
                join_transaction_mode="rollback_only",
            )
        return self._orm

    async def exec(
        self, statement: Any, *, params: dict[str, Any] | None = None, **kwargs: Any
    ) -> Any:
        """As `Session.exec`; a prebuilt Core statement runs on the cursor at once,
        after flushing pending ORM changes as autoflush would."""
        if params is not None and not kwargs:
            plan = direct.plan_for(statement, params, self.connection.dialect)
            if plan is not None:
                self.flush_pending()
                return direct.run(self.connection, plan, params)
        return self.sync.exec(statement, params=params, **kwargs)

    def flush_pending(self) -> None:
        orm = self._orm
        if orm is not None and (orm.new or orm.dirty or orm.deleted):
            orm.flush()

    def close(self) -> None:
        if self._orm is not None:
            self._orm.close()

    async def execute(self, *args: Any, **kwargs: Any) -> Any:
        return self.sync.execute(*args, **kwargs)

    async def get(self, *args: Any, **kwargs: Any) -> Any:
        return self.sync.get(*args, **kwargs)

    async def delete(self, instance: Any) -> None:
        self.sync.delete(instance)

    async def flush(self) -> None:
        self.sync.flush()

    def add(self, instance: Any) -> None:
        self.sync.add(instance)

    def get_bind(self) -> Connection:
        return self.connection


def run_at_once(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends (it awaits only `AtOnceSession`) to its end."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return cast(T, done.value)
    coroutine.close()
    raise RuntimeError("a live command awaited something that does not complete at once")


class KeyedLocks:
    """One asyncio.Lock per key, kept only while someone holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, list[int]]] = {}

    @contextlib.asynccontextmanager
    async def get(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.setdefault(key, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if not users[0]:
                del self._locks[key]

    def __len__(self) -> int:
        return len(self._locks)


def _not_saved(type_: str, exc: Exception) -> Rejected:
    log.warning("database unavailable for %s: %s", type_, exc)
    return Rejected("try_again", "the server could not save that just now; try again")


class LiveService:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        hub: Hub,
        cache: DefinitionCache,
        *,
        serialize_writes: bool = False,
        command_sessionmaker: async_sessionmaker[AsyncSession] | None = None,
        lane: Lane | None = None,
        pg_lane: PgLane | None = None,
    ) -> None:
        # `sessionmaker` is for reads of any length (the sockets' snapshots and
        # catch-ups); the commands' own short transactions use `command_sessionmaker`,
        # on SQLite an engine that runs on the loop's thread (app.db.engine.make_live_engine).
        self.sessionmaker = sessionmaker
        self.command_sessionmaker = command_sessionmaker or sessionmaker
        # The same engine, its sync face: each command runs in one greenlet on it.
        bind = self.command_sessionmaker.kw["bind"]
        self._command_engine = bind.sync_engine
        self._dialect = self._command_engine.dialect
        self.hub = hub
        self.cache = cache
        # SQLite has one writer at a time, and its busy handler waits by sleeping (1 to
        # 100 ms per try). Queueing writers here instead turns that wait into a handover,
        # and publishing inside the same turn keeps events in seq order for every socket.
        # Elsewhere (PostgreSQL) a workshop's commands queue for its row lock: queue them
        # here per workshop as well, so that no more than one transaction per worker
        # waits in the database for that row (a busy room would otherwise hold a pooled
        # connection per waiting command, and every handover would go through the
        # database's lock manager).
        self._write_turn: asyncio.Lock | None = asyncio.Lock() if serialize_writes else None
        self._workshop_turns = KeyedLocks()
        # On a SQLite file: participants' commands on a bare connection (see lane.py).
        # It relies on the write turn: one command at a time on it.
        self._lane = lane if self._write_turn is not None else None
        # On PostgreSQL: participants' frequent commands in one round trip (pg_lane.py).
        self.pg_lane = pg_lane

    def close(self) -> None:
        if self._lane is not None:
            self._lane.close()

    async def aclose(self) -> None:
        self.close()
        if self.pg_lane is not None:
            await self.pg_lane.close()

    async def handle(self, actor: Actor, command: Any) -> Outcome:
        """Execute a command; raises Rejected with a message for the sender."""
        type_ = command.type
        handler = HANDLERS.get(type_)
        if handler is None:
            raise Rejected("unknown_type", f"'{type_}' is not a command")
        if type_ in m.FACILITATOR_ONLY and not actor.is_facilitator:
            raise Rejected("forbidden", "only the facilitator can do that")
        if type_ == "note.drag":
            return await self._drag(actor, command)
        sent: list[Awaitable[None]] = []
        try:
            outcome = await self._on_pg_lane(actor, command, sent)
            if outcome is None and actor.is_facilitator:
                outcome = await self._facilitated_on_pg_lane(actor, command, handler, sent)
            if outcome is None:
                turn = self._write_turn or self._workshop_turns.get(actor.workshop_id)
                async with turn:
                    outcome = await self._write(actor, command, handler, sent)
            # The turn ends once the events are written to the hub, in seq order: the
            # next command runs while the hub's reply (Redis's) is on its way.
            while sent:
                await self._carried(actor.workshop_id, sent.pop(0))
        finally:
            for waiting in sent:  # cancelled: never awaited
                if inspect.iscoroutine(waiting):
                    waiting.close()
        return outcome

    async def _drag(self, actor: Actor, command: m.DragNote) -> Outcome:
        """A drag preview is checked and published, never written."""
        try:
            seq = self._drag_on_lane(actor, command)
            if seq is None:
                async with self.command_sessionmaker() as session:
                    ctx = await self._context(session, actor, command, write=False)
                    await HANDLERS["note.drag"](ctx, command)
                    seq = ctx.workshop.seq
                    await session.rollback()
        except (OperationalError, DBAPIError, OSError) as exc:
            raise Rejected("try_again", "the server could not check that; try again") from exc
        await self.publish_drag(actor, command, seq)
        return Outcome(events=[], result={}, seq=None)

    def _drag_on_lane(self, actor: Actor, command: m.DragNote) -> int | None:
        """A drag preview's checks on the lane, read only; None: use the usual path.

        A drag takes no write turn, but the lane is never inside a command's
        transaction here: each runs whole without handing back to the loop.
        """
        lane = self._lane
        if lane is None or command.type in lane.orm_types:
            return None
        session = lane.begin(write=False)
        if session is None:
            return None
        try:
            ctx = run_at_once(
                self._context(cast(AsyncSession, session), actor, command, write=False)
            )
            run_at_once(HANDLERS["note.drag"](ctx, command))
            return ctx.workshop.seq
        except NeedsOrm:
            log.warning("%s needs the ORM: not checked on the lane", command.type)
            lane.orm_types.add(command.type)
            return None
        finally:
            lane.rollback()

    async def _write(
        self, actor: Actor, command: Any, handler: Handler, sent: list[Awaitable[None]]
    ) -> Outcome:
        """Write and commit a command, and send its events to the hub (`sent`: what
        is still to be awaited for each, see `Hub.send`)."""
        type_ = command.type
        try:
            ctx = self._on_lane(actor, command, handler)
            if ctx is None:
                # The whole transaction in one greenlet: see AtOnceSession.
                ctx = await greenlet_spawn(self._transaction, actor, command, handler)
        except IntegrityError as exc:
            # Two people acted on the same row at once (a deleted note, a double vote):
            # nothing was written; the sender can simply retry.
            log.info("integrity conflict on %s: %s", type_, exc.orig)
            raise Rejected("conflict", "that changed while you acted; try again") from exc
        except (OperationalError, DBAPIError, OSError) as exc:
            raise _not_saved(type_, exc) from exc
        for event in ctx.events:
            await self._send(actor.workshop_id, event, sent)
        last = ctx.events[-1]["seq"] if ctx.events else None
        return Outcome(events=ctx.events, result=ctx.result, seq=last)

    async def _on_pg_lane(
        self, actor: Actor, command: Any, sent: list[Awaitable[None]]
    ) -> Outcome | None:
        """A participant's frequent command in one call (pg_lane.py); None: not done
        there, nothing was written.

        It takes no turn: the function holds the workshop's row lock only while it
        runs on the server, and a worker's few lane connections bound how many of its
        calls wait there. Several calls of one room are under way at once; their
        events may reach the hub out of seq order, which rooms put right.
        """
        lane = self.pg_lane
        if lane is None or command.type not in PG_LANE_TYPES:
            return None
        definition = self.cache.peek(actor.workshop_id)
        try:
            done = await lane.run(actor, command, definition, utcnow())
        except OSError as exc:  # LaneUnavailable: it may or may not have been written
            raise _not_saved(command.type, exc) from exc
        if done is None:
            return None
        await self._send(actor.workshop_id, done.event, sent)
        return Outcome(events=[done.event], result=done.result, seq=done.event["seq"])

    async def _facilitated_on_pg_lane(
        self, actor: Actor, command: Any, handler: Handler, sent: list[Awaitable[None]]
    ) -> Outcome | None:
        """A facilitator's command as a read and one write on the lane
        (pg_facilitation.py); None: not done there, nothing was written.

        Like the participants' calls it takes no turn: the write happens only if the
        workshop row is still as read (and, after other reads, its seq too)."""
        lane = self.pg_lane
        definition = self.cache.peek(actor.workshop_id)
        if lane is None or definition is None or command.type not in LANE_TRIES:
            return None
        try:
            ctx = await facilitate(lane, self._dialect, actor, command, handler, definition)
        except OSError as exc:  # LaneUnavailable: it may or may not have been written
            raise _not_saved(command.type, exc) from exc
        if ctx is None:
            return None
        for event in ctx.events:
            await self._send(actor.workshop_id, event, sent)
        return Outcome(events=ctx.events, result=ctx.result, seq=ctx.events[-1]["seq"])

    def _on_lane(self, actor: Actor, command: Any, handler: Handler) -> Ctx | None:
        """Check, write and commit on the lane (see lane.py); None: use the usual path,
        nothing was written."""
        lane = self._lane
        type_ = command.type
        if lane is None:
            return None
        tried = type_ in LANE_TRIES
        if not tried and (type_ not in LANE_COMMANDS or type_ in lane.orm_types):
            return None
        session = lane.begin()
        if session is None:
            return None  # the write lock is held elsewhere: the usual path waits for it
        try:
            ctx = self._commit_body(cast(AsyncSession, session), actor, command, handler)
        except NeedsOrm:
            lane.rollback()
            if not tried:
                # Not all plans after all (a handler changed): the usual path, from now on.
                log.warning("%s needs the ORM: not run on the lane", type_)
                lane.orm_types.add(type_)
            return None
        except BaseException:
            lane.rollback()
            raise
        lane.commit()
        return ctx

    def _commit_body(
        self, session: AsyncSession, actor: Actor, command: Any, handler: Handler
    ) -> Ctx:
        """A command's statements, inside its transaction: context, handler, and the
        seq given back if it emitted nothing."""
        ctx = run_at_once(self._context(session, actor, command))
        run_at_once(handler(ctx, command))
        if ctx.reserved_seq is not None:
            # No event after all: give the number back, the log has no holes.
            params = {"ctx_wid": actor.workshop_id, "ctx_seq": ctx.reserved_seq - 1}
            run_at_once(session.exec(_GIVE_BACK_SEQ, params=params))
        workshop = ctx.workshop
        if isinstance(workshop, WorkshopRow) and (save := workshop.save()) is not None:
            # A facilitator's changes to the workshop: one UPDATE of those columns.
            statement, params = save
            run_at_once(session.exec(statement, params=params))
        return ctx

    def _transaction(self, actor: Actor, command: Any, handler: Handler) -> Ctx:
        """Check, write and commit one command (inside a greenlet, see `_write`)."""
        with connect_to_begin(self._command_engine) as connection:
            at_once = AtOnceSession(connection)
            session = cast(AsyncSession, at_once)
            try:
                with connection.begin():  # commits at the end, rolls back on a raise
                    ctx = self._commit_body(session, actor, command, handler)
                    at_once.flush_pending()
            finally:
                at_once.close()
        return ctx

    async def rehearse(self, definition: Definition, connections: int) -> int:
        """A facilitator's commands run once on each of `connections` pooled
        connections and rolled back, so that none is cold for a real one
        (app/services/live/rehearsal.py); returns how many ran to their end."""
        from app.services.live.rehearsal import rehearse

        return await rehearse(
            self._command_engine, self._commit_body, self.cache, definition, connections
        )

    async def publish(self, workshop_id: str, message: dict[str, Any]) -> None:
        try:
            await self.hub.publish(workshop_id, message)
        except Exception:
            # Committed already: clients will see a gap in seq and catch up from the log.
            log.exception("publish failed for workshop %s", workshop_id)

    async def _send(
        self, workshop_id: str, message: dict[str, Any], sent: list[Awaitable[None]]
    ) -> None:
        """`publish` in two steps (Hub.send): the write now, the wait added to `sent`."""
        try:
            sent.append(await self.hub.send(workshop_id, message))
        except Exception:
            log.exception("publish failed for workshop %s", workshop_id)

    async def _carried(self, workshop_id: str, waiting: Awaitable[None]) -> None:
        try:
            await waiting
        except Exception:
            log.exception("publish failed for workshop %s", workshop_id)

    async def _context(
        self, session: AsyncSession, actor: Actor, command: Any, *, write: bool = True
    ) -> Ctx:
        """The workshop row and the actor's standing, in one statement.

        A write takes the workshop's next seq in the same statement (`UPDATE workshop
        SET seq = seq + 1 ... RETURNING`): the command's first event gets it, and the row
        lock it takes orders the command's reads and writes with every other command of
        the workshop on PostgreSQL (SQLite has one writer). A refused command rolls back,
        which gives the number back. A drag preview only reads.
        """
        stmt = _CONTEXT[write, actor.is_facilitator]
        params = {"ctx_wid": actor.workshop_id, "ctx_pid": actor.participant_id}
        row = (await session.exec(stmt, params=params)).first()
        if row is None:
            raise Rejected("not_found", "this workshop no longer exists")
        workshop: Workshop
        if actor.is_facilitator:
            workshop = cast(Workshop, WorkshopRow(row))  # saved by `_commit_body`
        else:
            # A read-only row with the workshop's columns (participants' handlers only
            # read ctx.workshop; `_write` gives an unused number back with _GIVE_BACK_SEQ).
            workshop = cast(Workshop, row)
            if not row.active:
                raise Rejected("removed", "you have been removed from this workshop")
            if workshop.state == "lobby":
                raise Rejected("not_started", "the workshop has not started yet")
            if workshop.input_locked:
                raise Rejected("locked", "the facilitator has paused input for a moment")
        if workshop.state == "ended":
            raise Rejected("ended", "this workshop has ended")
        definition, phases = await self.definition(session, workshop.id)
        return Ctx(
            session=session,
            workshop=workshop,
            definition=definition,
            phases=phases,
            actor=actor,
            now=utcnow(),
            cid=command.cid,
            ts=command.ts,
            reserved_seq=workshop.seq if write else None,
        )

    async def definition(
        self, session: AsyncSession, workshop_id: str
    ) -> tuple[Definition, tuple[Phase, ...]]:
        """The workshop's parsed definition: from the cache, else read and parsed once."""
        found = self.cache.peek(workshop_id)
        if found is None:
            stmt = select(Workshop.definition).where(col(Workshop.id) == workshop_id)
            found = self.cache.put(workshop_id, (await session.exec(stmt)).one())
        return found

    async def publish_drag(self, actor: Actor, cmd: m.DragNote, seq: int) -> None:
        """A drag preview to the room (checked already): never stored."""
        await self.publish(
            actor.workshop_id,
            {
                "type": "note.dragging",
                "seq": seq,
                "actor": actor.wire,
                "at": utcnow().isoformat(),
                "cid": cmd.cid,
                "ts": cmd.ts,
                "note_id": cmd.note_id,
                "x": cmd.x,
                "y": cmd.y,
            },
        )
