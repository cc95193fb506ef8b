"""The maturity profile as a radar chart: one axis per core function, one ring per level.

The geometry is computed here; the SVG itself comes from the Jinja template
``exports/radar.svg`` in the always-autoescaping environment, so function and level names
(which a definition author chose) cannot inject markup into the page or the PDF.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

from jinja2 import Environment
from markupsafe import Markup

from app.exports.report import Report
from app.web.templating import make_environment

WIDTH, HEIGHT = 640, 400
CX, CY, RADIUS = 320.0, 190.0, 140.0
LABEL_GAP = 18.0
LINE_CHARS = 18


@dataclass(frozen=True)
class Label:
    x: float
    y: float
    anchor: str
    lines: tuple[str, ...]


@cache
def _environment() -> Environment:
    return make_environment()


def _point(index: int, count: int, radius: float) -> tuple[float, float]:
    angle = -math.pi / 2 + 2 * math.pi * index / count
    return CX + radius * math.cos(angle), CY + radius * math.sin(angle)


def _points(values: list[float], top: int) -> str:
    count = len(values)
    coords = (_point(i, count, RADIUS * min(max(v, 0.0), top) / top) for i, v in enumerate(values))
    return " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)


def _wrap(text: str) -> tuple[str, ...]:
    lines: list[str] = []
    for word in text.split():
        if lines and len(lines[-1]) + 1 + len(word) <= LINE_CHARS:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return tuple(lines[:3]) or ("",)


def _label(index: int, count: int, text: str) -> Label:
    x, y = _point(index, count, RADIUS + LABEL_GAP)
    anchor = "middle" if abs(x - CX) < 1 else ("start" if x > CX else "end")
    lines = _wrap(text)
    # Labels above the centre grow upwards so they never run into the rings.
    if y < CY - 1:
        y -= 14 * (len(lines) - 1)
    return Label(x, y + 4, anchor, lines)


def render_svg(report: Report) -> Markup:
    """The chart as an inline SVG element (already escaped, safe to embed)."""
    top = max(len(report.scale), 1)
    count = len(report.functions)
    rings = [
        {
            "points": _points([float(k)] * count, top),
            "name": report.scale[k - 1],
            "y": CY - RADIUS * k / top,
        }
        for k in range(1, top + 1)
    ]
    recorded = [
        0.0 if f.recorded_level is None else f.recorded_level + 1.0 for f in report.functions
    ]
    cards = [f.card_score for f in report.functions]
    spokes = [_point(i, count, RADIUS) for i in range(count)]
    description = "; ".join(
        f"{f.name}: recorded {f.recorded_name or 'none'}, cards {f.card_level_name}"
        for f in report.functions
    )
    template = _environment().get_template("exports/radar.svg")
    svg = template.render(
        width=WIDTH,
        height=HEIGHT,
        cx=CX,
        cy=CY,
        rings=rings,
        spokes=spokes,
        labels=[_label(i, count, f.name) for i, f in enumerate(report.functions)],
        recorded=_points(recorded, top),
        recorded_dots=[_point(i, count, RADIUS * v / top) for i, v in enumerate(recorded)],
        cards=_points(cards, top),
        description=description,
        legend_y=HEIGHT - 14,
    )
    return Markup(svg)  # noqa: S704 - rendered by an autoescaping template
