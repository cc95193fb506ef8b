"""HTML fragments for browser clients, rendered from the same events as JSON.

A browser page (htmx with the ws extension) swaps each fragment into place by id
(out-of-band swaps). Fragments are rendered from the event *as the audience may see
it* (`views.render`), once per audience per event, with autoescaping always on.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from jinja2 import Template

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
        '{% else %}<div id="{{ dom_id("live", "error") }}" hx-swap-oob="outerHTML"'
        ' role="alert"></div>{% endif %}'
    )


def render_html(
    message: dict[str, Any],
    audience: Audience,
    anonymous: bool,
    card_titles: dict[str, str],
) -> str:
    return _template().render(e=render(message, audience, anonymous), card_titles=card_titles)


def render_control(message: dict[str, Any]) -> str:
    """ack / error / snapshot for a browser: an error banner, or a reload request."""
    kind = message.get("type")
    if kind == "error":
        return _controls().render(kind="error", code=message["code"], message=message["message"])
    if kind == "snapshot":
        return _controls().render(kind="resync", seq=message["seq"])
    return _controls().render(kind="clear")
