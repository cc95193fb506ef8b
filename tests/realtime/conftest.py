"""A real Uvicorn server in the test's event loop, and JSON protocol clients for it."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn
import websockets
from sqlalchemy import make_url
from websockets.asyncio.client import ClientConnection

from app.config import Settings
from app.db.engine import make_engine, make_sessionmaker
from app.main import create_app
from app.services.facilitators import create_facilitator
from app.services.live.engine import LiveService
from app.services.live.pg_lane import PgLane

PASSWORD = "correct horse battery"
_cids = itertools.count(1)


@dataclass
class Server:
    base: str
    settings: Settings
    http: httpx.AsyncClient
    app: Any = None
    clients: list[Client] = field(default_factory=list)  # closed when the server stops

    @property
    def ws_base(self) -> str:
        return self.base.replace("http://", "ws://")

    @property
    def live(self) -> LiveService:
        live = self.app.state.live
        assert isinstance(live, LiveService)
        return live

    @property
    def pg_lane(self) -> PgLane:
        """The live engine's PostgreSQL lane (on PostgreSQL only)."""
        lane = self.live.pg_lane
        assert isinstance(lane, PgLane)
        return lane

    @property
    def pg_dsn(self) -> str:
        """The database's URL as asyncpg takes it (on PostgreSQL only)."""
        url = make_url(self.settings.database_url).set(drivername="postgresql")
        return url.render_as_string(hide_password=False)


@pytest.fixture
async def server(settings: Settings) -> AsyncIterator[Server]:
    app = create_app(settings)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="warning", ws_max_size=64 * 1024, lifespan="on"
    )
    srv = uvicorn.Server(config)
    task = asyncio.create_task(srv.serve())
    for _ in range(500):
        if srv.started:
            break
        await asyncio.sleep(0.01)
    assert srv.started, "uvicorn did not start"
    port = srv.servers[0].sockets[0].getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=base) as http:
        running = Server(base, settings, http, app)
        yield running
        for client in running.clients:  # drop what a test left open (unread frames too)
            client.ws.transport.abort()
    srv.should_exit = True
    await asyncio.wait_for(task, 10)


@dataclass
class Client:
    """A JSON protocol client that records everything it receives."""

    ws: ClientConnection
    name: str
    received: list[dict[str, Any]] = field(default_factory=list)
    batches: list[dict[str, Any]] = field(default_factory=list)  # batch frames as sent
    _taken: set[int] = field(default_factory=set)

    async def send(self, type_: str, **fields: Any) -> str:
        cid = f"{self.name}-{next(_cids)}"
        await self.ws.send(json.dumps({"type": type_, "cid": cid, **fields}))
        return cid

    async def send_raw(self, text: str) -> None:
        await self.ws.send(text)

    async def _read(self, timeout: float) -> None:
        message = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        if message.get("type") == "batch":
            # Several events in one frame (docs/protocol.md): taken one by one.
            self.batches.append(message)
            self.received.extend(message["events"])
        else:
            self.received.append(message)

    async def next(self, timeout: float = 5.0) -> dict[str, Any]:
        """The oldest message not yet taken by next/until."""
        return await self.until(lambda _m: True, timeout)

    async def until(self, pred: Any, timeout: float = 5.0) -> dict[str, Any]:
        """The oldest not-yet-taken message matching `pred` (a type or a callable)."""
        check = (lambda msg: msg.get("type") == pred) if isinstance(pred, str) else pred
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        index = 0
        while True:
            while index < len(self.received):
                if index not in self._taken and check(self.received[index]):
                    self._taken.add(index)
                    return self.received[index]
                index += 1
            await self._read(max(0.01, deadline - loop.time()))

    async def arrived(self, type_: str, timeout: float = 5.0) -> None:
        """Read until a message of `type_` has arrived; nothing is taken."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not any(msg.get("type") == type_ for msg in self.received):
            await self._read(max(0.01, deadline - loop.time()))

    async def quiet(self, seconds: float = 0.3) -> list[dict[str, Any]]:
        """Everything that arrives within `seconds` (to show nothing more came)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        start = len(self.received)
        while (left := deadline - loop.time()) > 0:
            try:
                await self._read(left)
            except TimeoutError:
                break
        return self.received[start:]

    async def reply(self, cid: str, timeout: float = 5.0) -> dict[str, Any]:
        """The ack or error for command `cid`."""
        return await self.until(
            lambda m: m.get("type") in ("ack", "error") and m.get("cid") == cid, timeout
        )

    async def do(self, type_: str, **fields: Any) -> dict[str, Any]:
        """Send a command and return its ack; fail on an error."""
        cid = await self.send(type_, **fields)
        answer = await self.reply(cid)
        assert answer["type"] == "ack", answer
        return answer

    async def refused(self, type_: str, **fields: Any) -> dict[str, Any]:
        cid = await self.send(type_, **fields)
        answer = await self.reply(cid)
        assert answer["type"] == "error", answer
        return answer

    def events(self) -> list[dict[str, Any]]:
        """Stored events received so far (those with a seq that counts)."""
        return [
            m
            for m in self.received
            if "seq" in m
            and m["type"]
            not in ("ack", "error", "snapshot", "pong", "note.dragging", "participant.presence")
        ]

    async def close(self) -> None:
        await self.ws.close()


@dataclass
class Workshop:
    server: Server
    id: str
    join_code: str
    facilitator_token: str

    async def join(self, name: str) -> tuple[str, str]:
        response = await self.server.http.post(
            f"/api/workshops/{self.id}/participants",
            json={"join_code": self.join_code, "display_name": name},
        )
        assert response.status_code == 201, response.text
        body = response.json()
        return body["participant_id"], body["token"]

    async def connect(
        self, token: str, name: str, *, last_seq: int | None = None, **query: str
    ) -> Client:
        params = {"token": token, **query}
        if last_seq is not None:
            params["last_seq"] = str(last_seq)
        url = f"{self.server.ws_base}/ws/workshops/{self.id}?" + str(httpx.QueryParams(params))
        ws = await websockets.connect(url, max_size=2**22)
        client = Client(ws, name)
        self.server.clients.append(client)
        hello = await client.next()
        assert hello["type"] == "hello", hello
        if last_seq is None and query.get("format") != "html":
            # A snapshot follows the hello. Wait for it (without taking it), so that a
            # command sent next is never part of it already: a command that overtakes
            # the snapshot is in it and sends no separate event, which is correct but
            # not what a test sending that command right after connecting expects.
            await client.arrived("snapshot")
        return client

    async def facilitator(self, view: str | None = None) -> Client:
        if view:
            return await self.connect(self.facilitator_token, "fac", view=view)
        return await self.connect(self.facilitator_token, "fac")

    async def participant(self, name: str) -> tuple[str, Client]:
        pid, token = await self.join(name)
        return pid, await self.connect(token, name)


async def facilitator_token(server: Server, email: str) -> str:
    engine = make_engine(server.settings.database_url)
    async with make_sessionmaker(engine)() as session:
        await create_facilitator(session, email, PASSWORD)
    await engine.dispose()
    response = await server.http.post(
        "/api/auth/token", json={"email": email, "password": PASSWORD}
    )
    return str(response.json()["access_token"])


async def new_workshop(
    server: Server, email: str = "lead@agency.gov", definition: str = "dhs-cx-maturity"
) -> Workshop:
    token = await facilitator_token(server, email)
    response = await server.http.post(
        "/api/workshops",
        json={"definition": definition, "title": "Live test"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    return Workshop(server, body["id"], body["join_code"], token)


@pytest.fixture
async def workshop(server: Server) -> Workshop:
    return await new_workshop(server)
