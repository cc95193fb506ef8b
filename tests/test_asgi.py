"""The server's ASGI entry point (`app.asgi`), run in a process of its own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Start each app's lifespan and report how many objects the collector has frozen.
SCRIPT = """
import asyncio, gc, sys
from app.main import create_app

async def frozen_after_startup(app):
    async with app.router.lifespan_context(app):
        return gc.get_freeze_count()

if sys.argv[1] == "asgi":
    from app.asgi import app
else:
    app = create_app()
print(asyncio.run(frozen_after_startup(app)))
"""


def _frozen(which: str, tmp_path: Path) -> int:
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'asgi.db'}",
        "REDIS_URL": "",
        "SECRET_KEY": "k" * 40,
        "ENVIRONMENT": "test",
    }
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, which],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return int(done.stdout.strip().splitlines()[-1])


def test_the_server_freezes_its_startup_objects_out_of_the_collector(tmp_path: Path) -> None:
    # A worker's startup objects (modules, definitions, templates: 130,000 and more)
    # are never walked by a full collection, which stopped the loop for 60-80 ms.
    assert _frozen("asgi", tmp_path) > 50_000
    # An app built as tests build it freezes nothing (it would keep their garbage).
    assert _frozen("plain", tmp_path) == 0
