"""Vendored front-end files match their recorded checksums and are what pages load."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VENDOR_DIRS = [ROOT / "static" / "vendor", ROOT / "tests" / "vendor"]


def _sums(folder: Path) -> dict[str, str]:
    entries: dict[str, str] = {}
    for line in (folder / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        entries[name.lstrip("*")] = digest
    return entries


@pytest.mark.parametrize("folder", VENDOR_DIRS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_vendored_script_matches_its_checksum(folder: Path) -> None:
    sums = _sums(folder)
    scripts = sorted(p.name for p in folder.glob("*.js"))
    assert scripts, f"no scripts in {folder}"
    assert sorted(sums) == scripts, "SHA256SUMS must list exactly the vendored scripts"
    for name, digest in sums.items():
        actual = hashlib.sha256((folder / name).read_bytes()).hexdigest()
        assert actual == digest, f"{name} does not match SHA256SUMS"


def test_pages_load_only_vendored_scripts_from_self() -> None:
    """Templates reference scripts under /static/ only: nothing from a CDN."""
    templates = (ROOT / "app" / "web" / "templates").rglob("*.html")
    sources = {
        m for t in templates for m in re.findall(r'<script[^>]*src="([^"]+)"', t.read_text())
    }
    assert sources, "no script tags found in templates"
    for src in sources:
        assert not re.match(r"^(https?:)?//", src), f"external script: {src}"
    names = {Path(s.split("?")[0]).name for s in sources}
    assert {"htmx-2.0.11.min.js", "htmx-ext-ws-2.0.4.min.js"} <= names
