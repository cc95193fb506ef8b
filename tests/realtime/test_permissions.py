"""Who may do what: every command type against every kind of actor.

Command level, for actors with an open socket (`MATRIX`, which must name every type in
`COMMAND_TYPES`): this workshop's facilitator, one of its participants, and a
participant who was removed while connected (removed in the database, as by another
worker whose event has not arrived yet). Each command is tried in a fresh workshop put
in the phase (and state) where it works, so a refusal proves the role rule and not a
phase rule: the actor it is meant for succeeds there, the others get `forbidden`,
`participants_only` or `removed`, and a refused command changes nothing at all in the
database (every row of the workshop is compared) and reaches nobody but its sender.

Handshake level, for every command at once: a removed participant, a participant or
the facilitator of another workshop, anonymous visitors (no token, forged, tampered or
expired tokens) and pages on other origins never get a socket: the server refuses the
upgrade with HTTP 403, before accepting, so no command of theirs is ever read.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import websockets
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from sqlalchemy import update
from sqlmodel import col, select
from websockets.exceptions import ConnectionClosed, InvalidStatus

from app.db.engine import make_engine, make_sessionmaker
from app.db.models import (
    CardDecision,
    CardVote,
    DotVote,
    Event,
    LevelDecision,
    LevelRound,
    LevelVote,
    Note,
    NoteGroup,
    Participant,
)
from app.db.models import (
    Workshop as WorkshopRow,
)
from app.realtime.messages import COMMAND_TYPES, FACILITATOR_ONLY, PARTICIPANT_COMMANDS
from app.services.identity import participant_cookie
from app.services.security import ACCESS, PARTICIPANT, SESSION, TokenCodec
from tests.realtime.conftest import Client, Server, Workshop, new_workshop

SORT, DISCUSS, LEVEL_VOTE, REFLECT, PRIORITISE = 1, 2, 3, 4, 5
CARD = "measurement-feedback-channel"
CLOSE_REMOVED = 4003

OK = "ok"
FORBIDDEN = "forbidden"  # facilitator-only command from a participant
PARTICIPANTS_ONLY = "participants_only"  # a participant's own vote, from the facilitator
REMOVED = "removed"  # anything stateful from a removed participant (then closed 4003)


# --- reading the database -----------------------------------------------------------

ROWS: tuple[Any, ...] = (
    Participant,
    CardVote,
    LevelRound,
    LevelVote,
    NoteGroup,
    Note,
    DotVote,
    CardDecision,
    LevelDecision,
    Event,
)


class Db:
    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)
        self.sessions = make_sessionmaker(self.engine)

    async def fingerprint(self, workshop_id: str) -> dict[str, Any]:
        """Every row that belongs to the workshop, the workshop's own row included."""
        async with self.sessions() as session:
            workshop = await session.get(WorkshopRow, workshop_id)
            assert workshop is not None
            found: dict[str, Any] = {"workshop": workshop.model_dump()}
            for model in ROWS:
                rows = (
                    await session.exec(select(model).where(model.workshop_id == workshop_id))
                ).all()
                found[model.__name__] = sorted((row.model_dump() for row in rows), key=repr)
            return found

    async def set_removed(self, participant_id: str, removed: bool) -> None:
        """Remove (or restore) a participant behind the server's back: no event."""
        async with self.sessions() as session:
            await session.exec(
                update(Participant)
                .where(col(Participant.id) == participant_id)
                .values(removed_at=datetime.now(UTC) if removed else None)
            )
            await session.commit()


@pytest.fixture
async def db(server: Server) -> AsyncIterator[Db]:
    found = Db(server.settings.database_url)
    yield found
    await found.engine.dispose()


# --- clients ------------------------------------------------------------------------


def untaken(client: Client) -> list[dict[str, Any]]:
    return [m for i, m in enumerate(client.received) if i not in client._taken]


async def reply_to(client: Client, cid: str) -> dict[str, Any]:
    """The one answer to command `cid`: its ack, error or pong."""
    return await client.until(
        lambda m: m.get("cid") == cid and m["type"] in ("ack", "error", "pong")
    )


async def drain(*clients: Client) -> None:
    """Take everything sent so far to each client (a ping round trip each)."""
    for client in clients:
        cid = await client.send("ping")
        assert (await reply_to(client, cid))["type"] == "pong"
        client._taken.update(range(len(client.received)))


async def heard_nothing(client: Client) -> None:
    """Nothing reached `client` but the answer to a ping (sent after whatever we check)."""
    cid = await client.send("ping")
    assert (await reply_to(client, cid))["type"] == "pong"
    assert untaken(client) == []


async def closed_with(client: Client, timeout: float = 5.0) -> tuple[int | None, str | None]:
    with pytest.raises(ConnectionClosed):
        await client.quiet(timeout)
    return client.ws.close_code, client.ws.close_reason


async def create_workshop(server: Server, token: str) -> Workshop:
    response = await server.http.post(
        "/api/workshops",
        json={"definition": "dhs-cx-maturity", "title": "Permissions"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    return Workshop(server, body["id"], body["join_code"], token)


# --- the matrix ---------------------------------------------------------------------


@dataclass
class World:
    """A fresh workshop with its facilitator and two participants connected."""

    workshop: Workshop
    db: Db
    fac: Client
    ann: Client
    ann_id: str
    bob: Client
    bob_id: str
    note_id: str = ""
    group_id: str = ""
    closed: set[str] = field(default_factory=set)

    def client(self, actor: str) -> Client:
        return {"facilitator": self.fac, "participant": self.ann, "removed": self.bob}[actor]

    def open_clients(self) -> list[Client]:
        return [c for c in (self.fac, self.ann, self.bob) if c.name not in self.closed]

    async def prepare(self, steps: tuple[int | str, ...]) -> None:
        for step in steps:
            if step == "start":
                await self.fac.do("workshop.start")
            elif isinstance(step, int):
                await self.fac.do("phase.goto", index=step)
            elif step == "note":  # Ann's note, in the area that is prioritised later
                ack = await self.ann.do("note.create", area="how", text="Ann's idea")
                self.note_id = ack["result"]["note_id"]
            elif step == "group":
                ack = await self.fac.do("group.create", area="how", label="Ideas")
                self.group_id = ack["result"]["group_id"]
            elif step == "dot":
                await self.ann.do("dot.add", note_id=self.note_id)
            elif step == "timer":
                await self.fac.do("timer.start", seconds=120)
            elif step == "lock":
                await self.fac.do("input.lock")
            elif step == "vote":
                await self.ann.do("card.vote", card_id=CARD, choice="do")
            elif step == "reveal":
                await self.fac.do("votes.reveal")
            else:  # pragma: no cover
                raise AssertionError(f"unknown step {step!r}")
        await drain(*self.open_clients())

    async def close(self) -> None:
        for client in self.open_clients():
            await client.close()


Fields = Callable[[World], dict[str, Any]]


@dataclass(frozen=True)
class Row:
    """How one command is set up, and what each connected actor gets."""

    steps: tuple[int | str, ...]  # from the lobby: "start" then phases and set-up steps
    fields: Fields
    facilitator: str
    participant: str
    removed: str


def none(_w: World) -> dict[str, Any]:
    return {}


def fac_only(steps: tuple[int | str, ...], fields: Fields = none) -> Row:
    return Row(steps, fields, OK, FORBIDDEN, FORBIDDEN)


def votes(steps: tuple[int | str, ...], fields: Fields) -> Row:
    return Row(steps, fields, PARTICIPANTS_ONLY, OK, REMOVED)


def board(steps: tuple[int | str, ...], fields: Fields) -> Row:
    return Row(steps, fields, OK, OK, REMOVED)


def session(fields: Fields = none) -> Row:
    return Row(("start", SORT), fields, OK, OK, OK)


ON_SORT = ("start", SORT)
ON_BOARD = ("start", REFLECT)
WITH_NOTE = ("start", REFLECT, "note")

MATRIX: dict[str, Row] = {
    # facilitation: the facilitator, in a state where it works; nobody else, ever
    "workshop.start": fac_only(()),
    "phase.next": fac_only(ON_SORT),
    "phase.previous": fac_only(("start", DISCUSS)),
    "phase.goto": fac_only(ON_SORT, lambda w: {"index": REFLECT}),
    "timer.start": fac_only(ON_SORT, lambda w: {"seconds": 60}),
    "timer.pause": fac_only((*ON_SORT, "timer")),
    "timer.extend": fac_only((*ON_SORT, "timer"), lambda w: {"seconds": 30}),
    "input.lock": fac_only(ON_SORT),
    "input.unlock": fac_only((*ON_SORT, "lock")),
    "votes.reveal": fac_only((*ON_SORT, "vote")),
    "votes.hide": fac_only((*ON_SORT, "vote", "reveal")),
    "level_round.open": fac_only(("start", LEVEL_VOTE, "reveal")),
    "card.settle": fac_only(
        ("start", DISCUSS), lambda w: {"card_id": CARD, "practised": False, "note": "agreed"}
    ),
    "level.record": fac_only(
        ("start", LEVEL_VOTE), lambda w: {"function_id": "measurement", "level": 1}
    ),
    "anonymity.set": fac_only(ON_SORT, lambda w: {"anonymous": True}),
    "spotlight.set": fac_only(ON_SORT, lambda w: {"target": {"kind": "card", "id": CARD}}),
    "dots.set_budget": fac_only(("start", PRIORITISE), lambda w: {"budget": 5}),
    "participant.remove": fac_only(ON_SORT, lambda w: {"participant_id": w.bob_id}),
    "workshop.end": fac_only(ON_SORT),
    # a participant's own votes: participants only
    "card.vote": votes(ON_SORT, lambda w: {"card_id": CARD, "choice": "dont"}),
    "level.vote": votes(("start", LEVEL_VOTE), lambda w: {"level": 2}),
    "dot.add": votes((*WITH_NOTE, PRIORITISE), lambda w: {"note_id": w.note_id}),
    "dot.remove": votes((*WITH_NOTE, PRIORITISE, "dot"), lambda w: {"note_id": w.note_id}),
    # the board: participants and the facilitator
    "note.create": board(ON_BOARD, lambda w: {"area": "now", "text": "A thought"}),
    "note.edit": board(WITH_NOTE, lambda w: {"note_id": w.note_id, "text": "Edited"}),
    "note.move": board(WITH_NOTE, lambda w: {"note_id": w.note_id, "x": 0.2, "y": 0.8}),
    "note.drag": board(WITH_NOTE, lambda w: {"note_id": w.note_id, "x": 0.3, "y": 0.3}),
    "note.recolour": board(WITH_NOTE, lambda w: {"note_id": w.note_id, "colour": "pink"}),
    "note.delete": board(WITH_NOTE, lambda w: {"note_id": w.note_id}),
    "group.create": board(
        WITH_NOTE, lambda w: {"area": "how", "label": "Ideas", "note_ids": [w.note_id]}
    ),
    "group.rename": board((*ON_BOARD, "group"), lambda w: {"group_id": w.group_id, "label": "X"}),
    "group.delete": board((*ON_BOARD, "group"), lambda w: {"group_id": w.group_id}),
    "note.group": board(
        (*WITH_NOTE, "group"), lambda w: {"note_id": w.note_id, "group_id": w.group_id}
    ),
    # the session itself: anyone with a socket (the socket closes on the removal event)
    "presence.set": session(lambda w: {"status": "away"}),
    "sync": session(lambda w: {"last_seq": 0}),
    "ping": session(),
}


def test_matrix_names_every_command_exactly() -> None:
    assert set(MATRIX) == set(COMMAND_TYPES), (
        f"missing: {sorted(COMMAND_TYPES - set(MATRIX))}, "
        f"unknown: {sorted(set(MATRIX) - COMMAND_TYPES)}"
    )
    for type_, row in MATRIX.items():
        if type_ in FACILITATOR_ONLY:
            assert (row.participant, row.removed) == (FORBIDDEN, FORBIDDEN), type_
        elif type_ in PARTICIPANT_COMMANDS:
            assert row.removed == REMOVED and OK in (row.facilitator, row.participant), type_
        else:
            assert (row.facilitator, row.participant) == (OK, OK), type_


async def attempt(w: World, actor: str, type_: str, expected: str) -> None:
    """`actor` sends the command; check its answer, the database and the others."""
    row = MATRIX[type_]
    client = w.client(actor)
    if actor == "removed":
        await w.db.set_removed(w.bob_id, True)
    before = await w.db.fingerprint(w.workshop.id)
    others = [c for c in w.open_clients() if c is not client]
    cid = await client.send(type_, **row.fields(w))
    reply = await reply_to(client, cid)
    after = await w.db.fingerprint(w.workshop.id)
    if expected == OK:
        assert reply["type"] == ("pong" if type_ == "ping" else "ack"), reply
        if reply["type"] == "ack" and reply["seq"] is not None:
            assert after["workshop"]["seq"] == reply["seq"] > before["workshop"]["seq"]
            heard = await w.fac.until(lambda m: m.get("seq") == reply["seq"] and "at" in m)
            assert heard["type"].split(".")[0] == type_.split(".")[0], heard
            if type_ == "participant.remove":  # Bob's socket is closed at once
                assert await closed_with(w.bob) == (CLOSE_REMOVED, "removed from the workshop")
                w.closed.add(w.bob.name)
        else:
            assert after == before  # ephemeral (drag, presence) or session (ping, sync)
    else:
        assert reply["type"] == "error", reply
        assert (reply["code"], reply["cid"]) == (expected, cid), reply
        assert after == before, "a refused command changed the database"
        if expected == REMOVED:
            assert await closed_with(client) == (CLOSE_REMOVED, "removed from the workshop")
            w.closed.add(client.name)
            for other in others:
                gone = await other.until("participant.presence")
                assert (gone["participant_id"], gone["status"]) == (w.bob_id, "offline")
        else:
            await heard_nothing(client)
        for other in others:
            await heard_nothing(other)
    if actor == "removed":
        await w.db.set_removed(w.bob_id, False)
    await drain(*w.open_clients())


async def new_world(workshop: Workshop, db: Db, steps: tuple[int | str, ...]) -> World:
    fac = await workshop.facilitator()
    ann_id, ann = await workshop.participant("Ann")
    bob_id, bob = await workshop.participant("Bob")
    ann.name, bob.name = "ann", "bob"
    world = World(workshop, db, fac, ann, ann_id, bob, bob_id)
    await drain(fac, ann, bob)
    await world.prepare(steps)
    return world


async def test_permission_matrix(
    server: Server, db: Db, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.realtime import socket

    monkeypatch.setattr(socket, "RATE_PER_SECOND", 1000.0)  # the checks ping a lot
    token = (await new_workshop(server)).facilitator_token
    problems: list[str] = []
    for type_, row in MATRIX.items():
        expected = {"facilitator": row.facilitator, "participant": row.participant}
        # Refusals first (they change nothing), then one success per fresh workshop.
        order = ["removed"] + [a for a, e in expected.items() if e != OK]
        successes = [a for a, e in expected.items() if e == OK]
        if row.removed == OK:
            order.remove("removed")
            successes.append("removed")
        if type_ in FACILITATOR_ONLY | PARTICIPANT_COMMANDS:
            batches = [[*order, successes[0]], *[[a] for a in successes[1:]]]
        else:  # session commands change nothing: one workshop for all
            batches = [[*order, *successes]]
        wanted = {**expected, "removed": row.removed}
        for batch in batches:
            world = await new_world(await create_workshop(server, token), db, row.steps)
            try:
                for actor in batch:
                    try:
                        await attempt(world, actor, type_, wanted[actor])
                    except (AssertionError, TimeoutError, ConnectionClosed) as exc:
                        problems.append(f"{type_} by {actor} (expected {wanted[actor]}): {exc!r}")
                        break
            finally:
                await world.close()
    assert not problems, "\n".join(problems)
    assert [r.getMessage() for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")] == []


# --- ownership, and ids from another workshop ----------------------------------------


async def test_only_the_author_or_the_facilitator_changes_a_note(
    workshop: Workshop, db: Db
) -> None:
    world = await new_world(workshop, db, (*WITH_NOTE, "group", PRIORITISE, "dot", REFLECT))
    note = world.note_id
    before = await db.fingerprint(workshop.id)
    for type_, fields in (
        ("note.edit", {"note_id": note, "text": "Bob's now"}),
        ("note.recolour", {"note_id": note, "colour": "blue"}),
        ("note.delete", {"note_id": note}),
    ):
        error = await world.bob.refused(type_, **fields)
        assert error["code"] == "not_yours", error
    await heard_nothing(world.fac)
    await heard_nothing(world.ann)
    assert await db.fingerprint(workshop.id) == before
    # Moving and grouping are shared: anyone may tidy the board.
    await world.bob.do("note.move", note_id=note, x=0.9, y=0.9)
    await world.bob.do("note.group", note_id=note, group_id=world.group_id)
    # A dot is its voter's own: Bob cannot take back Ann's.
    await world.fac.do("phase.goto", index=PRIORITISE)
    error = await world.bob.refused("dot.remove", note_id=note)
    assert error["code"] == "no_dot"
    await world.fac.do("note.edit", note_id=note, text="Facilitator's wording")
    await world.ann.do("dot.remove", note_id=note)
    await world.close()


async def test_ids_of_another_workshop_are_unknown(server: Server, db: Db) -> None:
    """Actors of workshop B, on B's socket, naming A's participants, notes and groups."""
    a = await new_workshop(server, "a@agency.gov")
    world_a = await new_world(a, db, (*WITH_NOTE, "group", PRIORITISE, "dot", REFLECT))
    b = await new_workshop(server, "b@agency.gov")
    world_b = await new_world(b, db, ("start", REFLECT))
    before = await db.fingerprint(a.id)
    note, group = world_a.note_id, world_a.group_id
    tries: list[tuple[Client, str, dict[str, Any], str]] = [
        (
            world_b.fac,
            "participant.remove",
            {"participant_id": world_a.ann_id},
            "unknown_participant",
        ),
        (world_b.fac, "spotlight.set", {"target": {"kind": "note", "id": note}}, "unknown_target"),
        (
            world_b.fac,
            "spotlight.set",
            {"target": {"kind": "group", "id": group}},
            "unknown_target",
        ),
    ]
    for actor in (world_b.fac, world_b.ann):
        tries += [
            (actor, "note.edit", {"note_id": note, "text": "Mine now"}, "unknown_note"),
            (actor, "note.move", {"note_id": note, "x": 0.1, "y": 0.1}, "unknown_note"),
            (actor, "note.drag", {"note_id": note, "x": 0.1, "y": 0.1}, "unknown_note"),
            (actor, "note.recolour", {"note_id": note, "colour": "blue"}, "unknown_note"),
            (actor, "note.delete", {"note_id": note}, "unknown_note"),
            (actor, "note.group", {"note_id": note, "group_id": None}, "unknown_note"),
            (actor, "group.rename", {"group_id": group, "label": "Ours"}, "unknown_group"),
            (actor, "group.delete", {"group_id": group}, "unknown_group"),
            (
                actor,
                "group.create",
                {"area": "how", "label": "G", "note_ids": [note]},
                "unknown_note",
            ),
        ]
    for actor, type_, fields, code in tries:
        error = await actor.refused(type_, **fields)
        assert error["code"] == code, (type_, error)
    await world_b.fac.do("phase.goto", index=PRIORITISE)
    error = await world_b.ann.refused("dot.add", note_id=note)
    assert error["code"] == "unknown_note"
    error = await world_b.ann.refused("dot.remove", note_id=note)
    assert error["code"] == "no_dot"
    assert await db.fingerprint(a.id) == before
    for client in world_a.open_clients():
        await heard_nothing(client)
    await world_a.close()
    await world_b.close()


# --- removal while connected --------------------------------------------------------


async def test_removed_while_connected_is_closed_and_cannot_come_back(
    workshop: Workshop, db: Db
) -> None:
    fac = await workshop.facilitator()
    await fac.do("workshop.start")
    ann_id, ann_token = await workshop.join("Ann")
    ann = await workshop.connect(ann_token, "ann")
    _, bob = await workshop.participant("Bob")
    await drain(fac, ann, bob)
    await fac.do("participant.remove", participant_id=ann_id)
    removed = await ann.until("participant.removed")
    assert removed["participant_id"] == ann_id
    assert await closed_with(ann) == (CLOSE_REMOVED, "removed from the workshop")
    with pytest.raises(ConnectionClosed):
        await ann.send("card.vote", card_id=CARD, choice="do")
    # Bob hears of it and carries on; Ann's token no longer opens a socket.
    assert (await bob.until("participant.removed"))["participant_id"] == ann_id
    await bob.do("card.vote", card_id=CARD, choice="do")
    with pytest.raises(InvalidStatus) as refused:
        await websockets.connect(socket_url(workshop, token=ann_token))
    assert refused.value.response.status_code == 403
    # Removing her twice is refused, and nothing was stored for her after the removal.
    error = await fac.refused("participant.remove", participant_id=ann_id)
    assert error["code"] == "unknown_participant"
    found = await db.fingerprint(workshop.id)
    assert [v["participant_id"] for v in found["CardVote"]] != [ann_id]
    await fac.close()
    await bob.close()


# --- the handshake --------------------------------------------------------------------


def socket_url(workshop: Workshop, workshop_id: str | None = None, **query: str) -> str:
    params = str(httpx.QueryParams(query))
    return f"{workshop.server.ws_base}/ws/workshops/{workshop_id or workshop.id}?{params}"


def minted(secret: str, kind: str, payload: dict[str, Any], age_s: int = 0) -> str:
    """A token signed like the server's, `age_s` seconds old."""

    class Then(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - age_s

    return URLSafeTimedSerializer(secret, salt=f"cx-workshop/{kind}", signer=Then).dumps(payload)


async def test_handshake_refuses_strangers_with_403(workshop: Workshop, db: Db) -> None:
    server = workshop.server
    settings = server.settings
    secret = settings.secret_key
    codec = TokenCodec(secret)
    fac_id = codec.loads(ACCESS, workshop.facilitator_token, max_age_s=3600)["f"]
    ann_id, ann_token = await workshop.join("Ann")
    removed_id, removed_token = await workshop.join("Rex")
    await db.set_removed(removed_id, True)
    other = await new_workshop(server, "other@agency.gov")
    other_fac_id = codec.loads(ACCESS, other.facilitator_token, max_age_s=3600)["f"]
    olive_id, other_token = await other.join("Olive")
    origin = settings.allowed_origins[0]
    old_participant = settings.participant_token_days * 86400 + 60
    old_access = settings.access_token_hours * 3600 + 60
    old_session = settings.session_hours * 3600 + 60
    ann_payload = {"w": workshop.id, "p": ann_id}
    # Change a signature character that carries only signature bits (the last base64
    # character also holds padding bits that decoding ignores, so it may not tamper).
    tampered = ann_token[:-5] + ("A" if ann_token[-5] != "A" else "B") + ann_token[-4:]

    # (what, url, headers): each must be refused with HTTP 403 before any accept.
    refused: list[tuple[str, str, dict[str, str]]] = [
        ("no token", socket_url(workshop), {}),
        ("empty token", socket_url(workshop, token=""), {}),
        ("garbage token", socket_url(workshop, token="not-a-token"), {}),
        ("tampered token", socket_url(workshop, token=tampered), {}),
        (
            "participant token signed with another key",
            socket_url(workshop, token=minted("another-secret" * 4, PARTICIPANT, ann_payload)),
            {},
        ),
        (
            "access token signed as a participant token",
            socket_url(workshop, token=minted(secret, PARTICIPANT, {"f": fac_id})),
            {},
        ),
        (
            "participant token naming nobody",
            socket_url(workshop, token=minted(secret, PARTICIPANT, {"w": workshop.id, "p": "x"})),
            {},
        ),
        (
            "participant token for this workshop naming another workshop's participant",
            socket_url(
                workshop, token=minted(secret, PARTICIPANT, {"w": workshop.id, "p": olive_id})
            ),
            {},
        ),
        (
            "expired participant token",
            socket_url(workshop, token=minted(secret, PARTICIPANT, ann_payload, old_participant)),
            {},
        ),
        (
            "expired facilitator access token",
            socket_url(workshop, token=minted(secret, ACCESS, {"f": fac_id}, old_access)),
            {},
        ),
        (
            "expired facilitator session cookie",
            socket_url(workshop),
            {"Cookie": f"cxw_session={minted(secret, SESSION, {'f': fac_id}, old_session)}"},
        ),
        ("removed participant", socket_url(workshop, token=removed_token), {}),
        ("participant of another workshop", socket_url(workshop, token=other_token), {}),
        (
            "facilitator of another workshop",
            socket_url(workshop, token=other.facilitator_token),
            {},
        ),
        (
            "facilitator of another workshop, bearer header",
            socket_url(workshop),
            {"Authorization": f"Bearer {other.facilitator_token}"},
        ),
        (
            "facilitator of another workshop, session cookie",
            socket_url(workshop),
            {"Cookie": f"cxw_session={minted(secret, SESSION, {'f': other_fac_id})}"},
        ),
        (
            "participant cookie of another workshop",
            socket_url(workshop),
            {"Cookie": f"{participant_cookie(other.id)}={other_token}"},
        ),
        ("a workshop that does not exist", socket_url(workshop, "no-such-id", token=ann_token), {}),
        ("another workshop with this workshop's token", socket_url(other, token=ann_token), {}),
        # Cross-site pages: even with valid credentials (a browser sends the cookies).
        (
            "foreign origin, facilitator",
            socket_url(workshop, token=workshop.facilitator_token),
            {"Origin": "https://evil.example"},
        ),
        (
            "foreign origin, participant",
            socket_url(workshop, token=ann_token),
            {"Origin": "https://evil.example"},
        ),
        (
            "foreign origin, facilitator session cookie",
            socket_url(workshop),
            {
                "Origin": "https://evil.example",
                "Cookie": f"cxw_session={minted(secret, SESSION, {'f': fac_id})}",
            },
        ),
        ("opaque origin", socket_url(workshop, token=ann_token), {"Origin": "null"}),
        (
            "origin with another port",
            socket_url(workshop, token=ann_token),
            {"Origin": origin + ":1"},
        ),
        (
            "origin with a trailing slash",
            socket_url(workshop, token=ann_token),
            {"Origin": origin + "/"},
        ),
    ]
    accepted: list[tuple[str, str, dict[str, str]]] = [
        ("participant, no origin", socket_url(workshop, token=ann_token), {}),
        ("participant, allowed origin", socket_url(workshop, token=ann_token), {"Origin": origin}),
        (
            "participant, freshly minted token (the control for the expired one)",
            socket_url(workshop, token=minted(secret, PARTICIPANT, ann_payload, 60)),
            {},
        ),
        (
            "participant cookie of this workshop",
            socket_url(workshop),
            {"Origin": origin, "Cookie": f"{participant_cookie(workshop.id)}={ann_token}"},
        ),
        ("facilitator", socket_url(workshop, token=workshop.facilitator_token), {}),
        (
            "facilitator, bearer header",
            socket_url(workshop),
            {"Authorization": f"Bearer {workshop.facilitator_token}"},
        ),
        (
            "facilitator, session cookie",
            socket_url(workshop),
            {"Origin": origin, "Cookie": f"cxw_session={minted(secret, SESSION, {'f': fac_id})}"},
        ),
        (
            "facilitator, access token almost expired",
            socket_url(workshop, token=minted(secret, ACCESS, {"f": fac_id}, old_access - 120)),
            {},
        ),
    ]
    before = await db.fingerprint(workshop.id)
    failures = []
    for what, url, headers in refused:
        try:
            ws = await websockets.connect(url, additional_headers=headers)
        except InvalidStatus as exc:
            if exc.response.status_code != 403:
                failures.append(f"{what}: HTTP {exc.response.status_code}")
        else:
            failures.append(f"{what}: accepted")
            await ws.close()
    for what, url, headers in accepted:
        try:
            async with websockets.connect(url, additional_headers=headers) as ws:
                client = Client(ws, "probe")
                hello = await client.next()
                assert hello["type"] == "hello", hello
                await drain(client)
        except (InvalidStatus, AssertionError) as exc:
            failures.append(f"{what}: {exc!r}")
    assert failures == []
    # Nobody refused got as far as joining the room or writing anything.
    after = await db.fingerprint(workshop.id)
    assert after == before
