"""Online backup of the embedded SQLite database.

Uses SQLite's backup API, which copies a consistent snapshot page by page while the
server keeps running (WAL mode lets writers go on). For PostgreSQL use pg_dump.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy.engine import make_url


def sqlite_path(database_url: str) -> Path:
    url = make_url(database_url)
    if not url.drivername.startswith("sqlite") or not url.database:
        raise ValueError("backup works on the SQLite database; for PostgreSQL use pg_dump")
    return Path(url.database)


def backup_sqlite(database_url: str, target: Path) -> int:
    """Copy the live database to `target` (a new file); returns the pages copied."""
    source_path = sqlite_path(database_url)
    if not source_path.exists():
        raise FileNotFoundError(f"no database at {source_path}")
    if target.exists():
        raise FileExistsError(f"{target} exists; choose a new file name")
    target.parent.mkdir(parents=True, exist_ok=True)
    pages = 0

    def progress(_status: int, remaining: int, total: int) -> None:
        nonlocal pages
        pages = total - remaining

    source = sqlite3.connect(f"file:{source_path}?mode=ro", uri=True, timeout=30)
    dest = sqlite3.connect(target)
    try:
        source.backup(dest, pages=256, progress=progress)
        check = dest.execute("PRAGMA integrity_check").fetchone()
        if check is None or check[0] != "ok":
            raise RuntimeError(f"the copy failed its integrity check: {check}")
    finally:
        dest.close()
        source.close()
    return pages
