"""Real processes for fault tests: Uvicorn servers, a private Redis, streaming clients.

Everything runs on this machine's loopback. A test that needs PostgreSQL, Redis or the
`redis-server` binary fails loudly with CI=true when it is missing and skips elsewhere
(`tests.pg.require_service`). The machine's shared PostgreSQL and Redis are never
restarted: PostgreSQL faults are terminated backends of a scratch database, and Redis
faults happen to a `redis-server` each test starts for itself on a free port.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
import uvicorn
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from app.config import Settings
from app.db.engine import make_engine
from app.db.migrate import upgrade
from app.main import create_app
from tests import pg
from tests.conftest import TEST_SECRET, make_settings
from tests.net import free_port, uvicorn_command
from tests.realtime.conftest import Server

ROOT = Path(__file__).resolve().parents[2]
EPHEMERAL = {"note.dragging", "participant.presence"}
REPLIES = {"hello", "ack", "error", "pong", "snapshot"}


async def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


# --- databases ---------------------------------------------------------------------


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A migrated SQLite file (a sync fixture, so tests may ask for it by name)."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'faults.db'}"

    async def _migrate() -> None:
        engine = make_engine(url)
        await upgrade(engine)
        await engine.dispose()

    pg.run_sync(_migrate)
    return url


# --- server processes --------------------------------------------------------------


@dataclass
class ServerProcess:
    """`uvicorn app.asgi:app` in its own process group, so SIGKILL takes all of it."""

    database_url: str
    port: int
    log: Path
    redis_url: str | None = None
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def server(self, http: httpx.AsyncClient) -> Server:
        return Server(self.base, make_settings(self.database_url), http)

    async def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
        env.update(
            ENVIRONMENT="test",
            DATABASE_URL=self.database_url,
            SECRET_KEY=TEST_SECRET,
            PUBLIC_URL=self.base,
        )
        if self.redis_url:
            env["REDIS_URL"] = self.redis_url
        self.starts += 1
        log = self.log.with_suffix(f".{self.starts}.log")
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                uvicorn_command(self.port),
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        async with httpx.AsyncClient() as http:
            for _ in range(300):
                if self.proc.poll() is not None:
                    raise AssertionError(f"server exited: {log.read_text()}")
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get(f"{self.base}/healthz")).status_code == 200:
                        return
                await asyncio.sleep(0.1)
        self.kill()
        raise AssertionError(f"server on {self.port} did not start: {log.read_text()}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process group and wait for the process to be gone."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)

    def logs(self) -> str:
        return "\n".join(
            path.read_text(errors="replace")
            for path in sorted(self.log.parent.glob(self.log.stem + ".*.log"))
        )


@pytest.fixture
async def processes() -> AsyncIterator[list[ServerProcess]]:
    """Every server process a test starts; all are stopped at the end."""
    started: list[ServerProcess] = []
    yield started
    for proc in started:
        proc.kill(signal.SIGTERM)


# --- a private Redis ---------------------------------------------------------------


@dataclass
class RedisProcess:
    port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary is not None
        self.proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        client = aioredis.Redis.from_url(self.url, socket_connect_timeout=1)
        try:
            for _ in range(100):
                with contextlib.suppress(Exception):
                    if await client.ping():
                        return
                await asyncio.sleep(0.05)
        finally:
            await client.aclose()
        raise AssertionError(f"redis-server on {self.port} did not start")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


@pytest.fixture
async def own_redis() -> AsyncIterator[RedisProcess]:
    if shutil.which("redis-server") is None:
        pg.require_service("redis-server", FileNotFoundError("no redis-server on PATH"))
    found = RedisProcess(free_port())
    await found.start()
    yield found
    found.stop()


# --- the app in this test's event loop ---------------------------------------------


@pytest.fixture
async def inloop(pg_url: str) -> AsyncIterator[Server]:
    """Uvicorn in the test's event loop, on the scratch PostgreSQL database."""
    async with serve_in_loop(make_settings(pg_url)) as server:
        yield server


@contextlib.asynccontextmanager
async def serve_in_loop(settings: Settings) -> AsyncIterator[Server]:
    """The app under Uvicorn in the running event loop, with `settings`."""
    app = create_app(settings)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="warning", ws_max_size=64 * 1024, lifespan="on"
    )
    srv = uvicorn.Server(config)
    task = asyncio.create_task(srv.serve())
    await wait_until(lambda: srv.started, 10, "uvicorn")
    port = srv.servers[0].sockets[0].getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base) as http:
            yield Server(base, settings, http, app)
    finally:
        srv.should_exit = True
        await asyncio.wait_for(task, 10)


# --- a client that keeps reading ---------------------------------------------------


@dataclass
class Stream:
    """A JSON protocol client with a reader task: it records everything it is sent,
    and what it sent, until the connection drops."""

    ws: ClientConnection
    name: str
    received: list[dict[str, Any]] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, base: str, workshop_id: str, token: str, name: str, **query: str) -> Stream:
        params = str(httpx.QueryParams({"token": token, **query}))
        url = f"{base.replace('http://', 'ws://')}/ws/workshops/{workshop_id}?{params}"
        stream = cls(await websockets.connect(url, max_size=2**22), name)
        stream.reader = asyncio.create_task(stream._read())
        await stream.wait(lambda m: m["type"] == "hello")
        return stream

    async def _read(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for raw in self.ws:
                message = json.loads(raw)
                if message.get("type") == "batch":  # several events in one frame
                    self.received.extend(message["events"])
                else:
                    self.received.append(message)

    @property
    def closed(self) -> bool:
        return self.reader is not None and self.reader.done()

    async def send(self, type_: str, **fields: Any) -> str:
        cid = f"{self.name}-{len(self.sent) + 1}"
        command = {"type": type_, "cid": cid, **fields}
        self.sent.append(command)
        await self.ws.send(json.dumps(command))
        return cid

    def find(self, pred: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
        return next((m for m in self.received if pred(m)), None)

    async def wait(
        self, pred: Callable[[dict[str, Any]], bool], timeout: float = 10.0
    ) -> dict[str, Any]:
        await wait_until(lambda: self.find(pred) is not None, timeout, f"{self.name}: a message")
        found = self.find(pred)
        assert found is not None
        return found

    async def do(self, type_: str, **fields: Any) -> dict[str, Any]:
        cid = await self.send(type_, **fields)
        reply = await self.wait(lambda m: m.get("cid") == cid and m["type"] in ("ack", "error"))
        assert reply["type"] == "ack", reply
        return reply

    def replies(self) -> dict[str, dict[str, Any]]:
        return {m["cid"]: m for m in self.received if m["type"] in ("ack", "error")}

    def stored(self) -> list[dict[str, Any]]:
        """Stored events received, in arrival order (no replies, no ephemeral events)."""
        return [m for m in self.received if m["type"] not in REPLIES | EPHEMERAL]

    def last_seq(self) -> int:
        """What to resume from: the newest stored event, or the snapshot's seq."""
        seqs = [m["seq"] for m in self.received if m["type"] not in REPLIES | EPHEMERAL]
        seqs += [m["seq"] for m in self.received if m["type"] == "snapshot"]
        return max(seqs, default=-1)

    def assert_in_order(self) -> None:
        """Stored events came exactly once each, with no holes, after the snapshot."""
        snapshot = self.find(lambda m: m["type"] == "snapshot")
        seqs = [m["seq"] for m in self.stored()]
        start = snapshot["seq"] + 1 if snapshot else (seqs[0] if seqs else 0)
        assert seqs == list(range(start, start + len(seqs))), f"{self.name}: {seqs}"

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close()
        if self.reader is not None:
            await asyncio.wait({self.reader}, timeout=5)
