"""Start and stop the servers under test: the floor, and the app on SQLite or
PostgreSQL + Redis. Every server runs in its own process group (killed as a group),
on 127.0.0.1 only, pinned to the server core with taskset when it is available."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
FAC_EMAIL = "bench@example.gov"
FAC_PASSWORD = "bench password 123"  # noqa: S105 - a throwaway database
# The app's own flags (app.__main__ serve): 64 KiB frames; warnings only (no access log).
UVICORN_FLAGS = ["--host", "127.0.0.1", "--ws-max-size", "65536", "--log-level", "warning"]


def pinned(core: int | None) -> list[str]:
    if core is None or shutil.which("taskset") is None:
        return []
    return ["taskset", "-c", str(core)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    kind: str  # "floor" | "app"
    proc: subprocess.Popen[bytes] | None
    port: int
    log: Path
    database_url: str = ""
    pg_name: str = ""
    token: str = ""
    tmp: Path | None = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc is not None else 0


def _spawn(cmd: list[str], env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
            cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def _wait_ready(proc: subprocess.Popen[bytes], url: str, log: Path, timeout: float = 60) -> float:
    started = time.perf_counter()
    deadline = started + timeout
    with httpx.Client() as http:
        while time.perf_counter() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited ({proc.returncode}): {log.read_text()[-2000:]}")
            try:
                if http.get(url, timeout=2).status_code == 200:
                    return time.perf_counter() - started
            except httpx.TransportError:
                pass
            time.sleep(0.02)
    raise RuntimeError(f"server did not answer {url}: {log.read_text()[-2000:]}")


def stop(server: Server | None) -> None:
    """Stop the whole process group: SIGTERM, then SIGKILL after 10 s."""
    if server is None or server.proc is None or server.proc.poll() is not None:
        return
    proc = server.proc
    with _suppress_lookup():
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        with _suppress_lookup():
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


class _suppress_lookup:
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> bool:
        return kind is not None and issubclass(kind, ProcessLookupError)


def start_floor(core: int | None, logdir: Path, workers: int = 1) -> Server:
    """The floor; with several workers, `bench/floor_scaled.py` over Redis (same flags
    as the app's: `--workers N` needs a bus between the workers)."""
    port = free_port()
    log = logdir / f"floor-{port}.log"
    module = "bench.floor:app" if workers == 1 else "bench.floor_scaled:app"
    cmd = [*pinned(core), sys.executable, "-m", "uvicorn", module, "--port", str(port)]
    env = dict(os.environ)
    if workers > 1:
        cmd += ["--workers", str(workers)]
        env["FLOOR_REDIS_URL"] = REDIS_URL
        env["FLOOR_PREFIX"] = f"cxw-floor:{uuid.uuid4().hex[:12]}:"
    proc = _spawn([*cmd, *UVICORN_FLAGS], env, ROOT, log)
    server = Server("floor", proc, port, log, env=env)
    try:
        _wait_ready(proc, f"{server.base}/log/ready", log)
    except BaseException:
        stop_floor(server)
        raise
    return server


def stop_floor(server: Server) -> None:
    """Stop it, and drop the scaled floor's keys from Redis."""
    stop(server)
    prefix = server.env.get("FLOOR_PREFIX")
    if prefix:
        asyncio.run(_drop_keys(prefix))


async def _drop_keys(prefix: str) -> None:
    import redis.asyncio as redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = [key async for key in client.scan_iter(match=prefix + "*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


# --- the app ---------------------------------------------------------------------------


async def _pg_admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def create_pg_database() -> tuple[str, str]:
    name = f"cxw_bench_{uuid.uuid4().hex[:12]}"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    return f"{base}/{name}", name


def drop_pg_database(name: str) -> None:
    if name:
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def prepare_app(backend: str, workers: int, app_root: Path, logdir: Path) -> Server:
    """A fresh database with a facilitator, and the environment to serve it (not started)."""
    tmp = Path(tempfile.mkdtemp(prefix="cxw-bench-"))
    pg_name = ""
    if backend == "postgres":
        database_url, pg_name = create_pg_database()
    else:
        database_url = f"sqlite+aiosqlite:///{tmp / 'bench.db'}"
    port = free_port()
    env = {
        **os.environ,
        "ENVIRONMENT": "production",
        "DATABASE_URL": database_url,
        "SECRET_KEY": secrets.token_urlsafe(48),
        "PUBLIC_URL": f"http://127.0.0.1:{port}",
        "PYTHONPATH": str(app_root),
    }
    if backend == "postgres":
        env["REDIS_URL"] = REDIS_URL
    else:
        env.pop("REDIS_URL", None)
    log = logdir / f"app-{port}.log"
    py = sys.executable
    for cmd in (
        [py, "-m", "app", "migrate"],
        [py, "-m", "app", "create-facilitator", FAC_EMAIL, "--password", FAC_PASSWORD],
    ):
        done = subprocess.run(  # noqa: S603
            cmd, cwd=app_root, env=env, capture_output=True, timeout=300, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"{cmd[2:]} failed: {done.stderr.decode()[-2000:]}")
    server = Server("app", None, port, log, database_url, pg_name, tmp=tmp, env=env)
    server.env["BENCH_WORKERS"] = str(workers)
    return server


def start_app(server: Server, core: int | None, app_root: Path) -> float:
    """Start (or restart) the prepared app; returns the seconds until /healthz answered."""
    workers = int(server.env["BENCH_WORKERS"])
    cmd = [*pinned(core), sys.executable, "-m", "uvicorn", "app.asgi:app"]
    cmd += ["--port", str(server.port), *UVICORN_FLAGS]
    if workers > 1:
        cmd += ["--workers", str(workers)]
    started = time.perf_counter()
    proc = server.proc = _spawn(cmd, server.env, app_root, server.log)
    try:
        _wait_ready(proc, f"{server.base}/healthz", server.log)
    except BaseException:
        stop(server)
        raise
    ready = time.perf_counter() - started
    if not server.token:
        r = httpx.post(
            f"{server.base}/api/auth/token",
            json={"email": FAC_EMAIL, "password": FAC_PASSWORD},
            timeout=30,
        )
        r.raise_for_status()
        server.token = r.json()["access_token"]
    return ready


def dispose_app(server: Server | None) -> None:
    if server is None:
        return
    stop(server)
    if server.pg_name:
        drop_pg_database(server.pg_name)
    if server.tmp is not None:
        shutil.rmtree(server.tmp, ignore_errors=True)
