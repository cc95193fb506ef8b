"""A facilitator's commands rehearsed on each pooled PostgreSQL connection, rolled back.

A PostgreSQL server process pays for each table and statement the first time it
meets them (it loads the tables' and indexes' descriptions into its caches and plans
the statement), and asyncpg prepares each statement once per connection. The
facilitator's commands take the usual path (`LiveService._transaction`) on the
pool's connections, and are rare: in a busy room most of them ran on a connection
that had never run them. Revealing votes took 5.5 ms there against 2 ms after, on
an idle machine, and starting a workshop or revealing votes were the slowest events
under load (docs/benchmarks.md, change 39). Since change 44 most of them run on the
live lane instead (`pg_facilitation.py`); the usual path still takes those the lane
leaves to it (entering or revealing a level vote, a refusal, a row changed in
between), so the rehearsal stays.

`rehearse` runs when a worker starts: on as many connections at once as the pool
keeps, each in a transaction of its own, it adds a throwaway facilitator and
workshop and runs a facilitator's usual commands on them through the same code as a
real command (start, each kind of phase, reveal and hide votes, a timer), then rolls
the whole transaction back. Nothing is written, nothing is published, and no other
workshop's rows are touched (the rows are new, and invisible to others until a
commit that never comes).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, cast

from sqlalchemy.engine import Engine
from sqlalchemy.util import greenlet_spawn
from sqlmodel.ext.asyncio.session import AsyncSession

from app.db.engine import connect_to_begin
from app.db.models import Facilitator, Workshop
from app.db.types import new_id
from app.domain.definitions import Definition, PhaseKind, definition_to_snapshot, expand_phases
from app.realtime.messages import parse_command
from app.services.live.context import Actor, Ctx, Handler, Rejected
from app.services.live.engine import HANDLERS, AtOnceSession, DefinitionCache

# `LiveService._commit_body`: a command's statements inside its transaction.
CommitBody = Callable[[AsyncSession, Actor, Any, Handler], Ctx]

log = logging.getLogger(__name__)

# At most this long at start; a connection not rehearsed by then is simply cold.
TIMEOUT_S = 10.0
# The phase kinds visited, and what is done in each (after `phase.goto`).
VISITS: tuple[tuple[PhaseKind, tuple[dict[str, Any], ...]], ...] = (
    (PhaseKind.SORT, ({"type": "votes.reveal"}, {"type": "votes.hide"})),
    (PhaseKind.LEVEL_VOTE, ({"type": "votes.reveal"}, {"type": "votes.hide"})),
    (PhaseKind.REFLECT, ({"type": "timer.start", "seconds": 60}, {"type": "timer.pause"})),
    (PhaseKind.PRIORITISE, ()),
)


def script(definition: Definition) -> list[dict[str, Any]]:
    """The commands rehearsed for `definition`: start, then each kind of `VISITS`
    that it has, then the next phase."""
    phases = expand_phases(definition)
    commands: list[dict[str, Any]] = [{"type": "workshop.start"}]
    for kind, steps in VISITS:
        index = next((i for i, phase in enumerate(phases) if phase.kind is kind), None)
        if index is not None:
            commands += [{"type": "phase.goto", "index": index}, *steps]
    commands.append({"type": "phase.next"})
    return [{**command, "cid": f"rehearsal-{i}"} for i, command in enumerate(commands)]


async def rehearse(
    engine: Engine,
    commit_body: CommitBody,
    cache: DefinitionCache,
    definition: Definition,
    connections: int,
) -> int:
    """Rehearse `script(definition)` on `connections` pooled connections at once (see
    the module's docstring); returns how many rehearsals ran to their end. Never
    raises: a worker starts whatever happens here."""
    try:
        async with asyncio.timeout(TIMEOUT_S):
            done = await asyncio.gather(
                *(
                    greenlet_spawn(_rehearse, engine, commit_body, cache, definition)
                    for _ in range(connections)
                ),
                return_exceptions=True,
            )
    except TimeoutError:
        log.warning("the facilitator's commands were not rehearsed in %s s", TIMEOUT_S)
        return 0
    failed = [outcome for outcome in done if isinstance(outcome, BaseException)]
    for failure in failed[:1]:
        log.warning("a rehearsal of the facilitator's commands failed: %r", failure)
    return len(done) - len(failed)


def _rehearse(
    engine: Engine, commit_body: CommitBody, cache: DefinitionCache, definition: Definition
) -> None:
    """One rehearsal on one connection, inside the greenlet (as `_transaction`)."""
    with connect_to_begin(engine) as connection:
        at_once = AtOnceSession(connection)
        session = cast(AsyncSession, at_once)
        transaction = connection.begin()
        workshop_id = ""
        try:
            facilitator = Facilitator(
                email=f"rehearsal-{new_id()}@rehearsal.invalid",
                display_name="Rehearsal",
                password_hash="-",  # noqa: S106 - matches no password; rolled back
            )
            at_once.sync.add(facilitator)
            at_once.sync.flush()
            workshop = Workshop(
                facilitator_id=facilitator.id,
                title="Rehearsal",
                definition_id=definition.id,
                definition=definition_to_snapshot(definition),
                join_code=f"R{new_id()[:15]}",
            )
            at_once.sync.add(workshop)
            at_once.sync.flush()
            workshop_id = workshop.id
            actor = Actor("facilitator", workshop_id, facilitator_id=facilitator.id)
            for raw in script(definition):
                command = parse_command(raw)
                try:
                    commit_body(session, actor, command, HANDLERS[command.type])
                    at_once.flush_pending()
                except Rejected as refused:
                    # The definition lacks what the command needs: nothing to warm.
                    log.debug("rehearsal: %s refused: %s", command.type, refused)
        finally:
            transaction.rollback()
            at_once.close()
            if workshop_id:
                cache.forget(workshop_id)
