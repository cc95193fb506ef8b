"""`python -m app backup PATH` copies a live SQLite database that restores whole."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from app.db.backup import backup_sqlite

ROOT = Path(__file__).resolve().parents[2]


def _env(db: Path) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": f"sqlite+aiosqlite:///{db}",
        "ENVIRONMENT": "test",
        "SECRET_KEY": "k" * 40,
    }


def _run(*args: str, db: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        cwd=ROOT,
        env=_env(db),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_backup_while_open_and_restore(tmp_path: Path) -> None:
    db = tmp_path / "live.db"
    assert _run("migrate", db=db).returncode == 0
    assert (
        _run("create-facilitator", "a@agency.gov", "--password", "long password", db=db).returncode
        == 0
    )
    # A writer holds the database open (WAL) while the backup runs.
    writer = sqlite3.connect(db)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("BEGIN")
    writer.execute(
        "INSERT INTO facilitator (id, email, display_name, password_hash, created_at) "
        "VALUES ('x', 'uncommitted@agency.gov', 'X', 'h', '2026-01-01 00:00:00')"
    )
    copy = tmp_path / "backups" / "copy.db"
    result = _run("backup", str(copy), db=db)
    writer.rollback()
    writer.close()
    assert result.returncode == 0, result.stderr
    assert "backed up" in result.stdout
    # Restore: the copy is a working database with the committed rows only.
    restored = tmp_path / "restored.db"
    restored.write_bytes(copy.read_bytes())
    check = _run("create-facilitator", "a@agency.gov", "--password", "long password", db=restored)
    assert check.returncode == 1 and "already exists" in check.stderr
    emails = [r[0] for r in sqlite3.connect(restored).execute("SELECT email FROM facilitator")]
    assert emails == ["a@agency.gov"]
    assert _run("backup", str(copy), db=db).returncode == 1  # never overwrites


def test_backup_refuses_postgres_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="pg_dump"):
        backup_sqlite("postgresql+asyncpg://u@h/db", tmp_path / "x.db")
    with pytest.raises(FileNotFoundError):
        backup_sqlite(f"sqlite+aiosqlite:///{tmp_path / 'none.db'}", tmp_path / "y.db")
