"""The command line, run as a real process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
        check=False,
    )


def test_validate_definition(tmp_path: Path) -> None:
    good = _run("validate-definition", "workshop_templates/dhs-cx-maturity.yaml")
    assert good.returncode == 0, good.stderr
    assert "valid" in good.stdout
    bad_file = tmp_path / "bad.yaml"
    bad_file.write_text("format: 1\nid: bad\ntitle: X\nscale: []\n", encoding="utf-8")
    bad = _run("validate-definition", str(bad_file))
    assert bad.returncode == 1
    assert f"{bad_file}:4:1: scale: has 0 items (expected at least 2)" in bad.stderr


def test_migrate_and_create_facilitator(tmp_path: Path) -> None:
    env = {
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}",
        "SECRET_KEY": "k" * 40,
        "ENVIRONMENT": "test",
    }
    assert _run("migrate", env=env).returncode == 0
    made = _run("create-facilitator", "Ana@Agency.gov", "--password", "long enough pw", env=env)
    assert made.returncode == 0, made.stderr
    assert "created facilitator ana@agency.gov" in made.stdout
    again = _run("create-facilitator", "ana@agency.gov", "--password", "long enough pw", env=env)
    assert again.returncode == 1
    assert "already exists" in again.stderr
    short = _run("create-facilitator", "b@agency.gov", "--password", "short", env=env)
    assert short.returncode == 1
    assert "at least 10 characters" in short.stderr
