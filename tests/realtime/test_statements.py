"""SQL statements per live command, counted (never timed) on SQLite and PostgreSQL.

Every statement the server sends to the database between a command and its reply
is counted with a `before_cursor_execute` listener on the app's engines (the main one,
and on SQLite the live commands' own, `app.state.live_engine`). The figures
pin design change 2 of docs/benchmarks.md: the workshop row, the actor's standing
and the command's seq come from one statement; votes are one upsert; a dot is one
query plus its insert. The transaction's BEGIN/COMMIT are not cursor statements.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event

from tests.realtime.conftest import Client, Server, Workshop

CARD = "measurement-feedback-channel"

# Command kind -> statements, including the event's INSERT.
EXPECTED = {
    "workshop.start": 3,  # workshop + seq; phase state UPDATE; event INSERT
    "card.vote (first)": 4,  # workshop + seq; upsert; voters COUNT; event INSERT
    "card.vote (change)": 4,
    "card.vote (refused: locked)": 1,  # workshop + standing, rolled back
    "input.lock": 3,
    "level.vote": 5,  # workshop + seq; current round; upsert; voters COUNT; event INSERT
    "note.create": 4,  # workshop + seq; free spot COUNT; note INSERT; event INSERT
    "note.move": 4,  # workshop + seq; note SELECT; note UPDATE; event INSERT
    "dot.add": 4,  # workshop + seq; note with both counts; dot INSERT; event INSERT
    "dot.remove": 4,  # workshop + seq; dot with both counts; dot DELETE; event INSERT
}
# On PostgreSQL participants' frequent commands are one call of a function on the
# PgLane's own connection (app/services/live/pg_lane.py), counted here as one; most
# facilitators' commands are a read of the workshop row and one call there
# (pg_facilitation.py). A refused vote: the lane's call, refused, and the usual path.
PG_LANE = (
    "card.vote (first)",
    "card.vote (change)",
    "level.vote",
    "note.create",
    "note.move",
    "dot.add",
    "dot.remove",
)
EXPECTED_POSTGRES = (
    EXPECTED
    | dict.fromkeys(PG_LANE, 1)
    | {"workshop.start": 2, "input.lock": 2, "card.vote (refused: locked)": 2}
)


class Counter:
    def __init__(self, server: Server) -> None:
        self.statements: list[str] = []
        self.server = server
        state = server.app.state
        self.engines = [state.engine.sync_engine]
        if state.live_engine is not state.engine:
            self.engines.append(state.live_engine.sync_engine)
        for engine in self.engines:
            event.listen(engine, "before_cursor_execute", self._seen)
        # The PgLane's statements, each one round trip on its own connection.
        self.lane = state.live.pg_lane
        if self.lane is not None:
            call = self.lane._call

            async def counted(sql: str, calls: list[Any], **kwargs: Any) -> Any:
                self.statements.append(sql)
                return await call(sql, calls, **kwargs)

            self.lane._call = counted

    def _seen(self, _conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        if statement.startswith("PRAGMA wal_checkpoint"):
            return  # the checkpointer's, once a second, whatever the commands do
        self.statements.append(statement)

    def close(self) -> None:
        for engine in self.engines:
            event.remove(engine, "before_cursor_execute", self._seen)
        if self.lane is not None:
            del self.lane._call  # the class's own again

    async def count(self, clients: list[Client], sender: Client, type_: str, **fields: Any) -> int:
        for client in clients:
            await client.quiet(0.05)
        self.statements.clear()
        cid = await sender.send(type_, **fields)
        await sender.reply(cid)
        for client in clients:
            await client.quiet(0.1)  # anything the event sets off is counted too
        return len(self.statements)


async def test_statements_per_command(server: Server, workshop: Workshop) -> None:
    fac = await workshop.facilitator()
    _ann_id, ann = await workshop.participant("Ann")
    _bob_id, bob = await workshop.participant("Bob")
    room = [fac, ann, bob]
    counter = Counter(server)
    seen: dict[str, int] = {}
    try:
        c = counter.count
        seen["workshop.start"] = await c(room, fac, "workshop.start")
        seen["card.vote (first)"] = await c(room, ann, "card.vote", card_id=CARD, choice="do")
        seen["card.vote (change)"] = await c(room, ann, "card.vote", card_id=CARD, choice="dont")
        seen["input.lock"] = await c(room, fac, "input.lock")
        seen["card.vote (refused: locked)"] = await c(
            room, bob, "card.vote", card_id=CARD, choice="do"
        )
        await fac.do("input.unlock")
        await fac.do("phase.goto", index=3)
        seen["level.vote"] = await c(room, ann, "level.vote", level=1)
        await fac.do("phase.next")
        seen["note.create"] = await c(room, ann, "note.create", area="how", text="Weekly review")
        note_id = next(m for m in ann.received if m.get("type") == "note.created")["note"]["id"]
        seen["note.move"] = await c(room, bob, "note.move", note_id=note_id, x=0.5, y=0.5)
        await fac.do("phase.next")
        seen["dot.add"] = await c(room, ann, "dot.add", note_id=note_id)
        seen["dot.remove"] = await c(room, ann, "dot.remove", note_id=note_id)
    finally:
        counter.close()
    postgres = server.app.state.engine.dialect.name == "postgresql"
    assert seen == (EXPECTED_POSTGRES if postgres else EXPECTED)
