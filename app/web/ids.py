"""One helper makes every DOM id, so pages, live fragments and tests agree."""

from __future__ import annotations

import re

_UNSAFE = re.compile(r"[^a-zA-Z0-9_-]")


def dom_id(kind: str, *parts: object) -> str:
    """`dom_id("note", "ab12")` -> "note-ab12"; unsafe characters become "_"."""
    return "-".join([kind, *(_UNSAFE.sub("_", str(p)) for p in parts if p is not None)])
