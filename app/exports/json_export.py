"""JSON export: the whole :class:`~app.exports.document.ExportDocument`, UTF-8, indented.

Keys keep the model's field order and lists the documented order, so the same workshop
always gives the same bytes (the round-trip test relies on it).
"""

from __future__ import annotations

import json

from app.exports.outcome import Outcome

MEDIA_TYPE = "application/json"


def render(outcome: Outcome) -> bytes:
    data = outcome.document.model_dump(mode="json")
    # ensure_ascii=False keeps non-Latin text readable; JSON is UTF-8 by definition.
    return (json.dumps(data, ensure_ascii=False, indent=2) + "\n").encode("utf-8")
