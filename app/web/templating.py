"""Jinja environment with autoescaping for every template, whatever its extension.

Starlette's default only escapes .html/.htm/.xml; SVG charts and text templates
carry participants' words too, so escaping is unconditional here.
"""

from __future__ import annotations

from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from starlette.templating import Jinja2Templates

TEMPLATES_DIR = Path(__file__).parent / "templates"


def make_environment() -> Environment:
    from app.web.ids import dom_id

    env = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["dom_id"] = dom_id
    return env


def make_templates() -> Jinja2Templates:
    return Jinja2Templates(env=make_environment())
