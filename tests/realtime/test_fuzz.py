"""Hypothesis fuzzing of command messages over a real socket.

Each example puts the workshop in a random phase (`phase.goto`), then sends a few
messages as the facilitator or as a participant: commands built from the wire
schema's own models with random (often real, often wrong) field values, the same
with one field broken (wrong type, missing, extra), and garbage (random JSON, text,
deep nesting, huge strings, binary frames). Properties, for every message:

* the server answers it with exactly one `ack`, `error` or `pong`, carrying the
  message's `cid` whenever that can be read (a ping sent after it is answered, so the
  socket is open and nothing else was answered in between);
* a refused message stores nothing (the workshop's `seq` and event count do not
  move); an accepted one stores exactly the events up to its acked `seq`;
* bad input never looks like a server fault: no `try_again`/`conflict` answers,
  nothing logged at ERROR by the `app` or `uvicorn` loggers;

and after every example the Event table numbers the workshop's events 1..N without
holes, N being the workshop's `seq`.

One server and one room serve all the examples of a test (hence the suppressed
`function_scoped_fixture` health check); a room whose workshop was ended by a fuzzed
`workshop.end` is replaced by a fresh one. Runs are derandomized for CI.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, get_args

import pytest
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from sqlalchemy import func
from sqlmodel import col, select
from websockets.exceptions import ConnectionClosed

from app.db.engine import make_engine, make_sessionmaker
from app.db.models import Event
from app.db.models import Workshop as WorkshopRow
from app.domain.definitions import expand_phases, load_definitions
from app.realtime import messages as m
from app.realtime import socket
from tests.realtime.conftest import Client, Server, Workshop, new_workshop

DEFINITION = load_definitions()["dhs-cx-maturity"]
PHASES = len(expand_phases(DEFINITION))
CARDS = [c.id for f in DEFINITION.functions for c in f.cards]
FUNCTIONS = list(DEFINITION.function_ids)
AREAS = [a.id for a in DEFINITION.board.areas]
COLOURS = list(DEFINITION.board.colours)
MODELS: dict[str, type[BaseModel]] = {
    get_args(model.model_fields["type"].annotation)[0]: model
    for model in get_args(get_args(m.AnyCommand)[0])
}
# What each actor mostly sends (three in four commands): its own kind of command.
SESSION = m.COMMAND_TYPES - m.FACILITATOR_ONLY - m.PARTICIPANT_COMMANDS
OWN = {
    "facilitator": m.FACILITATOR_ONLY
    | SESSION
    | {t for t in m.PARTICIPANT_COMMANDS if t.startswith(("note.", "group."))},
    "participant": m.PARTICIPANT_COMMANDS | SESSION,
}
_marks = itertools.count(1)

# --- strategies ---------------------------------------------------------------------

JSON_LEAF = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
)
JSON_VALUE = st.recursive(
    JSON_LEAF,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
TEXT = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=600),
    st.sampled_from(["", " ", "\t\n", "\u200b", "a\x00b", "<script>alert(1)</script>", "é" * 501]),
    st.integers(0, 7_000).map(lambda n: "w" * n),
)
RANDOM_ID = st.text(min_size=0, max_size=70) | st.sampled_from(["", "x" * 64, "x" * 65, "a\x00"])
# Frames that once hurt the server (or could): each is drawn often, not left to luck.
NASTY = [
    "[" * 4_000 + "]" * 4_000,  # json.loads recursion while looking for the cid
    '{"type": "ping", "cid": "\\ud800"}',  # a cid that cannot be sent back as UTF-8
    '{"type": "ping", "cid": "\\u0000"}',
    '{"type": "sync", "last_seq": 100000000000000000000000000000, "cid": "n-sync"}',
    '{"type": "sync", "last_seq": 9223372036854775808, "cid": "n-sync-64"}',
    '{"type": "sync", "last_seq": 1000000, "cid": "n-sync-ahead"}',
    '{"type": "card.settle", "card_id": "measurement-feedback-channel", "practised": true,'
    ' "note": "' + "n" * 1_001 + '", "cid": "n-long-note"}',
    '{"type": "level.record", "function_id": "measurement", "level": 1,'
    ' "note": "' + "n" * 2_000 + '", "cid": "n-level-note"}',
    '{"type": "note.edit", "note_id": "a\\u0000b", "text": "x", "cid": "n-nul"}',
    '{"type": "participant.remove", "participant_id": "\\u0000", "cid": "n-nul-p"}',
    '{"type": "card.settle", "card_id": "x", "practised": true, "note": "\\u0000", "cid": "n"}',
    '{"type": "note.create", "area": "how", "text": "' + "é" * 500 + '", "cid": "n-500"}',
    '{"type": "group.create", "area": "how", "label": "L", "note_ids": '
    + json.dumps(["n"] * 100)
    + ', "cid": "n-ids"}',
]
PRINTABLE = st.characters(codec="utf-8", exclude_categories=("Cc", "Cs"))
SANE_ID = st.text(PRINTABLE, min_size=1, max_size=64)
SANE_TEXT = st.text(PRINTABLE, min_size=1, max_size=80) | st.sampled_from([" ", "\u200b"])


@dataclass
class Pools:
    """Ids that exist (or existed) in the current workshop, for commands that hit."""

    notes: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    participants: list[str] = field(default_factory=list)


def one_of_pool(pool: list[str], other: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Usually an id from `pool` as it is when drawn, else one from `other`.

    The draws do not depend on the pool's size, so examples replay consistently."""
    return st.tuples(st.integers(0, 3), st.integers(0, 10_000), other).map(
        lambda t: pool[t[1] % len(pool)] if t[0] and pool else t[2]
    )


def field_values(pools: Pools, sane: bool) -> dict[str, st.SearchStrategy[Any]]:
    """A strategy for every field name the commands use: values the schema accepts
    (`sane`: the ids may still not exist), or anything of roughly the right kind."""
    if sane:
        notes = one_of_pool(pools.notes, SANE_ID)
        groups = one_of_pool(pools.groups, SANE_ID)
        return {
            "index": st.integers(0, PHASES - 1) | st.integers(PHASES, PHASES + 2),
            "seconds": st.none() | st.integers(10, 3_600),
            "card_id": one_of_pool(CARDS, SANE_ID),
            "practised": st.booleans(),
            "note": st.none() | SANE_TEXT,
            "function_id": one_of_pool(FUNCTIONS, SANE_ID),
            "level": st.integers(0, 3),
            "anonymous": st.booleans(),
            "target": st.none()
            | st.fixed_dictionaries(
                {
                    "kind": st.sampled_from(["card", "note", "group", "area"]),
                    "id": st.one_of(
                        one_of_pool(CARDS, SANE_ID), notes, groups, one_of_pool(AREAS, SANE_ID)
                    ),
                }
            ),
            "budget": st.integers(0, 6),
            "participant_id": one_of_pool(pools.participants, SANE_ID),
            "choice": st.sampled_from(["do", "dont", "unsure"]),
            "area": one_of_pool(AREAS, SANE_ID),
            "text": SANE_TEXT,
            "label": SANE_TEXT,
            "colour": st.none() | one_of_pool(COLOURS, SANE_ID),
            "x": st.floats(0, 1),
            "y": st.floats(0, 1),
            "note_id": notes,
            "group_id": st.none() | groups,
            "note_ids": st.lists(notes, max_size=4),
            "status": st.sampled_from(["online", "away"]),
            "last_seq": st.integers(0, 300) | st.sampled_from([10**6, 2**63, 10**30]),
        }
    notes = one_of_pool(pools.notes, RANDOM_ID)
    groups = one_of_pool(pools.groups, RANDOM_ID)
    coordinate = st.floats(allow_nan=True, allow_infinity=True)
    return {
        "index": st.integers(-2, PHASES + 2) | st.integers(-(2**70), 2**70),
        "seconds": st.integers(0, 20_000) | st.integers(-(2**40), 2**40),
        "card_id": RANDOM_ID,
        "practised": JSON_LEAF,
        "note": TEXT | st.integers(990, 1_010).map(lambda n: "n" * n),
        "function_id": RANDOM_ID,
        "level": st.integers(-2, 25) | st.integers(-(2**70), 2**70),
        "anonymous": JSON_LEAF,
        "target": st.fixed_dictionaries(
            {"kind": st.sampled_from(["card", "person", ""]), "id": RANDOM_ID}
        )
        | JSON_VALUE,
        "budget": st.integers(-1, 52),
        "participant_id": RANDOM_ID,
        "choice": st.sampled_from(["maybe", "DO", ""]),
        "area": RANDOM_ID,
        "text": TEXT,
        "label": TEXT,
        "colour": RANDOM_ID,
        "x": coordinate,
        "y": coordinate,
        "note_id": notes,
        "group_id": groups,
        "note_ids": st.lists(notes, max_size=5) | st.lists(st.sampled_from(["n"]), max_size=120),
        "status": st.sampled_from(["offline", "ONLINE"]),
        "last_seq": st.integers(-5, -1) | st.integers(0, 2**80),
    }


def test_every_command_field_has_a_strategy() -> None:
    names = {name for model in MODELS.values() for name in model.model_fields}
    for sane in (True, False):
        assert names - {"type", "cid", "ts"} <= set(field_values(Pools(), sane))


@st.composite
def command(draw: st.DrawFn, pools: Pools, who: str) -> dict[str, Any]:
    """A command of a random type, its fields drawn from the schema's own model: mostly
    values it accepts, sometimes (one in eight) a wild one."""
    mine = sorted(OWN[who] if draw(st.integers(0, 3)) else MODELS)
    type_ = draw(st.sampled_from(mine))
    sane, wild = field_values(pools, True), field_values(pools, False)
    message: dict[str, Any] = {"type": type_}
    for name, info in MODELS[type_].model_fields.items():
        if name in ("type", "cid", "ts"):
            continue
        if info.is_required() or draw(st.booleans()):
            message[name] = draw(wild[name] if draw(st.integers(0, 11)) == 0 else sane[name])
    if draw(st.integers(0, 9)) == 0:
        message["ts"] = draw(
            st.floats(0, 2e12) | st.floats(allow_nan=True) | st.integers() | st.text(max_size=5)
        )
    return message


@st.composite
def broken(draw: st.DrawFn, pools: Pools, who: str) -> dict[str, Any]:
    """A schema command with one thing wrong: a value's type, a missing or extra field."""
    message = draw(command(pools, who))
    how = draw(st.sampled_from(["retype", "drop", "extra", "retag"]))
    keys = sorted(k for k in message if k != "type")
    if how == "retype" and keys:
        message[draw(st.sampled_from(keys))] = draw(JSON_VALUE)
    elif how == "drop" and keys:
        del message[draw(st.sampled_from(keys))]
    elif how == "retag":
        message["type"] = draw(JSON_VALUE | st.sampled_from(["", "NOTE.CREATE", "note.create "]))
    else:
        message[draw(st.text(min_size=1, max_size=12))] = draw(JSON_VALUE)
    return message


@st.composite
def frame(draw: st.DrawFn, pools: Pools, who: str) -> str | bytes:
    """What goes on the wire: mostly commands, with a cid that is usually readable."""
    kind = draw(st.sampled_from(["command"] * 8 + ["broken"] * 2 + ["garbage", "nasty"]))
    if kind == "garbage":
        return draw(
            st.one_of(
                JSON_VALUE.map(json.dumps),
                st.dictionaries(st.text(max_size=8), JSON_VALUE, max_size=5).map(json.dumps),
                st.text(max_size=60),
                st.binary(max_size=40),
                st.integers(1, 4_100).map(lambda n: "[" * n + "]" * n),
                st.integers(1, 4_100).map(lambda n: '{"a":' * n + "1" + "}" * n),
                st.integers(8_000, 60_000).map(
                    lambda n: json.dumps({"type": "ping", "p": "x" * n})
                ),
            )
        )
    if kind == "nasty":
        return draw(st.sampled_from(NASTY))
    message = draw(command(pools, who) if kind == "command" else broken(pools, who))
    cid = draw(
        st.sampled_from(["fresh"] * 20 + ["none", "int", "long", "empty"]),
    )
    if cid == "fresh":
        message["cid"] = f"fz-{next(_marks)}"
    elif cid == "int":
        message["cid"] = 7
    elif cid == "long":
        message["cid"] = "c" * 65
    elif cid == "empty":
        message["cid"] = ""
    return json.dumps(message, ensure_ascii=draw(st.booleans()))


def readable_cid(sent: str | bytes) -> str | None:
    """The cid the answer must echo: the message's, whenever it can be read at all."""
    if isinstance(sent, bytes) or len(sent.encode()) > socket.MAX_MESSAGE_BYTES:
        return None
    try:
        value = json.loads(sent)
    except (ValueError, RecursionError):
        return None
    cid = value.get("cid") if isinstance(value, dict) else None
    if not isinstance(cid, str) or len(cid) > 64:
        return None
    try:
        cid.encode()
    except UnicodeEncodeError:  # a lone surrogate cannot go back in a text frame
        return None
    return cid


# --- the room -----------------------------------------------------------------------


class Db:
    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)
        self.sessions = make_sessionmaker(self.engine)

    async def state(self, workshop_id: str) -> tuple[int, int, str, bool]:
        """(workshop.seq, number of events, state, input locked)."""
        async with self.sessions() as session:
            row = await session.get(WorkshopRow, workshop_id)
            assert row is not None
            count = (
                await session.exec(
                    select(func.count()).select_from(Event).where(Event.workshop_id == workshop_id)
                )
            ).one()
            return row.seq, int(count), row.state, row.input_locked

    async def seqs(self, workshop_id: str) -> tuple[int, list[int]]:
        async with self.sessions() as session:
            row = await session.get(WorkshopRow, workshop_id)
            assert row is not None
            found = (
                await session.exec(
                    select(Event.seq)
                    .where(Event.workshop_id == workshop_id)
                    .order_by(col(Event.seq))
                )
            ).all()
            return row.seq, list(found)


@dataclass
class Room:
    workshop: Workshop
    fac: Client
    ann: Client
    pools: Pools


@dataclass
class Fuzz:
    server: Server
    db: Db
    token: str
    room: Room | None = None
    workshops: list[str] = field(default_factory=list)
    messages: int = 0

    async def live_room(self) -> Room:
        """The current room, or a new one when its workshop has ended."""
        room = self.room
        if room is not None:
            _, _, state, _ = await self.db.state(room.workshop.id)
            if state != "ended":
                return room
            await room.fac.close()
            await room.ann.close()
        response = await self.server.http.post(
            "/api/workshops",
            json={"definition": "dhs-cx-maturity", "title": "Fuzz"},
            headers={"Authorization": f"Bearer {self.token}"},
        )
        assert response.status_code == 201, response.text
        body = response.json()
        workshop = Workshop(self.server, body["id"], body["join_code"], self.token)
        self.workshops.append(workshop.id)
        fac = await workshop.facilitator()
        await fac.do("workshop.start")
        _, ann = await workshop.participant("Ann")
        # Bob may be removed by a fuzzed command; Ann (connected) is never named.
        bob_id, _ = await workshop.join("Bob")
        self.room = Room(workshop, fac, ann, Pools(participants=[bob_id]))
        return self.room

    async def ping(self, client: Client) -> None:
        mark = f"\u2063mark-{next(_marks)}"
        await client.send_raw(json.dumps({"type": "ping", "cid": mark}))
        await client.until(lambda msg: msg.get("type") == "pong" and msg.get("cid") == mark)

    async def answer(self, client: Client, sent: str | bytes) -> dict[str, Any]:
        """Send `sent` then a ping; the one answer that came between them."""
        if isinstance(sent, bytes):
            await client.ws.send(sent)
        else:
            await client.send_raw(sent)
        mark = f"\u2063mark-{next(_marks)}"
        await client.send_raw(json.dumps({"type": "ping", "cid": mark}))
        answers = []
        while True:
            try:
                reply = await client.until(lambda msg: msg.get("type") in ("ack", "error", "pong"))
            except (TimeoutError, ConnectionClosed) as exc:
                pytest.fail(f"the server stopped answering after {sent[:200]!r}: {exc!r}")
            if reply["type"] == "pong" and reply["cid"] == mark:
                break
            answers.append(reply)
        assert len(answers) == 1, (sent[:200], answers)
        return answers[0]

    async def check(self, client: Client, sent: str | bytes) -> None:
        room = self.room
        assert room is not None
        self.messages += 1
        before = await self.db.state(room.workshop.id)
        reply = await self.answer(client, sent)
        after = await self.db.state(room.workshop.id)
        assert reply.get("cid") == readable_cid(sent), (sent[:200], reply)
        event(f"{reply['type']} {reply.get('code', '')}".strip())  # --hypothesis-show-statistics
        if reply["type"] == "ack" and reply["seq"] is not None:
            assert after[0] == reply["seq"] > before[0], (sent[:200], reply, before, after)
            assert after[1] - before[1] == after[0] - before[0]
            result = reply["result"]
            if "note_id" in result:
                room.pools.notes.append(result["note_id"])
            if "group_id" in result:
                room.pools.groups.append(result["group_id"])
        else:
            assert after[:2] == before[:2], (sent[:200], reply, before, after)
        if reply["type"] == "error":
            assert reply["code"] not in ("try_again", "conflict"), (sent[:200], reply)
            assert reply["message"], reply

    async def no_holes(self, workshop_id: str) -> None:
        seq, found = await self.db.seqs(workshop_id)
        assert found == list(range(1, seq + 1)), (seq, found)


@pytest.fixture
async def fuzz(server: Server, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Fuzz]:
    # The fuzzer sends much faster than people do: the rate limit has its own test.
    monkeypatch.setattr(socket, "RATE_PER_SECOND", 100_000.0)
    monkeypatch.setattr(socket, "RATE_BURST", 100_000)
    token = (await new_workshop(server, "fuzz@agency.gov")).facilitator_token
    found = Fuzz(server, Db(server.settings.database_url), token)
    yield found
    for workshop_id in found.workshops:
        await found.no_holes(workshop_id)
    if found.room:
        await found.room.fac.close()
        await found.room.ann.close()
    await found.db.engine.dispose()


def server_faults(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        f"{r.name}: {r.getMessage()}"
        for r in caplog.records
        if r.name.split(".")[0] in ("app", "uvicorn")
        and (r.levelno >= logging.ERROR or "database unavailable" in r.getMessage())
    ]


@settings(
    max_examples=250,
    deadline=None,
    derandomize=True,
    database=None,
    # The server keeps state between examples, so a failure cannot be shrunk reliably:
    # report the first one as it happened (derandomized, so a rerun finds it again).
    phases=[Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
async def test_fuzzed_commands_never_hurt_the_server(
    fuzz: Fuzz, caplog: pytest.LogCaptureFixture, data: st.DataObject
) -> None:
    room = await fuzz.live_room()
    _, _, _, locked = await fuzz.db.state(room.workshop.id)
    if data.draw(st.booleans(), label="unlock") and locked:
        await room.fac.do("input.unlock")
    # Often stay, else go anywhere, or to the first core function's phases (1 to 5)
    # so that its board fills up with notes, groups and dots to act on.
    index = data.draw(
        st.none() | st.none() | st.integers(1, 5) | st.integers(0, PHASES - 1), label="goto"
    )
    if index is not None:
        await room.fac.do("phase.goto", index=index)
    who = data.draw(st.sampled_from(["facilitator", "participant"]), label="who")
    client = room.fac if who == "facilitator" else room.ann
    frames = st.lists(frame(room.pools, who), min_size=1, max_size=4)
    for sent in data.draw(frames, label="frames"):
        await fuzz.check(client, sent)
    for each in (room.fac, room.ann):  # both still answer (and have read all they got)
        await fuzz.ping(each)
        each.received.clear()
        each._taken.clear()
    await fuzz.no_holes(room.workshop.id)
    assert server_faults(caplog) == []
