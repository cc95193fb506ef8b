"""What each audience may see of an event: rendered once per audience, not per socket.

Audiences: the facilitator, participants, and the projector (a shared screen).
Stored events keep everything (a card vote's choice, who wrote a note); these rules
remove what an audience must not see:

* a vote's choice is never sent: results arrive only with `votes.revealed`;
* in anonymous mode, authors of notes are hidden from everyone, and who voted or
  dotted, and names, are hidden from participants and the projector.
"""

from __future__ import annotations

import json
from typing import Any

from app.realtime.messages import Audience

PRIVATE_FIELDS: dict[str, tuple[str, ...]] = {"card.voted": ("choice",), "level.voted": ("level",)}
WHO_FIELDS = {"card.voted", "level.voted", "dot.added", "dot.removed"}
NOTE_EVENTS = {
    "note.created",
    "note.edited",
    "note.moved",
    "note.recoloured",
    "note.deleted",
    "note.grouped",
    "note.dragging",
    "group.created",
    "group.renamed",
    "group.deleted",
}


def render(message: dict[str, Any], audience: Audience, anonymous: bool) -> dict[str, Any]:
    type_ = message["type"]
    out = {k: v for k, v in message.items() if k not in PRIVATE_FIELDS.get(type_, ())}
    if not anonymous:
        return out
    hide_who = audience != "facilitator"
    if out.get("actor") not in (None, "facilitator") and (hide_who or type_ in NOTE_EVENTS):
        out["actor"] = None
    if type_ == "note.created":
        out["note"] = {**out["note"], "author_id": None}
    elif hide_who and type_ in WHO_FIELDS:
        out["participant_id"] = None
    elif hide_who and type_ == "participant.joined":
        out["participant"] = {**out["participant"], "display_name": None, "organisation": None}
    return out


def dumps(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False)


def render_text(message: dict[str, Any], audience: Audience, anonymous: bool) -> str:
    return dumps(render(message, audience, anonymous))


def actor_from_log(tag: str | None) -> str | None:
    """Event.actor ("facilitator:<id>" / "participant:<id>") as events name it."""
    if tag is None:
        return None
    kind, _, ident = tag.partition(":")
    return "facilitator" if kind == "facilitator" else ident
