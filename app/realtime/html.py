"""HTML fragments for browser clients, rendered from the same events as JSON.

A browser page (htmx with the ws extension) swaps each fragment into place by id
(out-of-band swaps). Fragments are rendered from the event *as the audience may see
it* (`views.render`), once per audience per event, with autoescaping always on.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from jinja2 import Template

from app.domain.definitions import Definition
from app.realtime.messages import Audience
from app.realtime.views import render
from app.web.ids import dom_id
from app.web.templating import make_environment


@lru_cache(maxsize=1)
def _template() -> Template:
    env = make_environment()
    env.globals["dom_id"] = dom_id
    return env.get_template("live/events.html")


@lru_cache(maxsize=1)
def _controls() -> Template:
    env = make_environment()
    env.globals["dom_id"] = dom_id
    return env.from_string(
        '{% if kind == "error" %}<div id="{{ dom_id("live", "error") }}" hx-swap-oob="outerHTML"'
        ' role="alert" data-code="{{ code }}">{{ message }}</div>'
        '{% elif kind == "resync" %}<div id="{{ dom_id("live", "resync") }}"'
        ' hx-swap-oob="outerHTML" data-seq="{{ seq }}" data-reload="true"></div>'
        '{% elif kind == "mine" %}<div hx-swap-oob="beforeend:#live-signals">'
        '<template class="signal" data-kind="mine" data-note="{{ note }}"></template></div>'
        '{% elif kind == "dots" %}<span id="{{ dom_id("dots-left") }}" hx-swap-oob="outerHTML">'
        "{{ left }} dots left</span>"
        '{% else %}<div id="{{ dom_id("live", "error") }}" hx-swap-oob="outerHTML"'
        ' role="alert"></div>{% endif %}'
    )


def html_context(definition: Definition) -> dict[str, Any]:
    """What fragments need from a workshop's definition (computed once per room)."""
    return {
        "card_titles": {c.id: c.title for f in definition.functions for c in f.cards},
        "areas": [{"id": a.id, "name": a.name} for a in definition.board.areas],
        "area_names": {a.id: a.name for a in definition.board.areas},
        "colours": list(definition.board.colours),
    }


def render_html(
    message: dict[str, Any],
    audience: Audience,
    anonymous: bool,
    context: dict[str, Any],
) -> str:
    """`context`: the workshop's card titles, board areas and colours."""
    return _template().render(e=render(message, audience, anonymous), audience=audience, **context)


def render_control(message: dict[str, Any]) -> str:
    """ack / error / snapshot for a browser: an error banner, or a reload request."""
    kind = message.get("type")
    if kind == "error":
        return _controls().render(kind="error", code=message["code"], message=message["message"])
    if kind == "snapshot":
        return _controls().render(kind="resync", seq=message["seq"])
    result = message.get("result") or {}
    out = _controls().render(kind="clear")
    if kind == "ack" and result.get("note_id"):
        out += _controls().render(kind="mine", note=result["note_id"])
    if kind == "ack" and result.get("dots_left") is not None:
        out += _controls().render(kind="dots", left=result["dots_left"])
    return out
    return _controls().render(kind="clear")


def render_seq(seq: int) -> str:
    """The page's latest seq on its own (it ends a batch: the seq the page resumes from)."""
    return f'<div id="live-seq" hx-swap-oob="outerHTML" data-seq="{int(seq)}" hidden></div>'
