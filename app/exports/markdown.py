"""Markdown report (CommonMark with GitHub tables), shaped like the DHS pilot findings.

Every piece of text that people typed or a definition author chose goes through
:func:`escape`, which backslash-escapes the characters that Markdown or embedded HTML
would act on. A viewer shows the text exactly as written; nothing in it can become a
link, a heading, a table cell break or an HTML tag. The radar chart is embedded as an SVG
data URI, defined at the end of the file so the body stays readable as plain text.
"""

from __future__ import annotations

import base64
import re

from app.exports.outcome import Outcome
from app.exports.radar import render_svg
from app.exports.report import AreaReport, CardItem, FunctionReport, Report, agreement_text, build

MEDIA_TYPE = "text/markdown; charset=utf-8"
# Inline syntax, raw HTML, entities, tables and (GitHub) strikethrough and autolinks.
_INLINE = re.compile(r"([\\`*_{}\[\]<>|~]|&(?=[#A-Za-z0-9]))")
# Block syntax that matters only at the start of a line: lists, quotes, headings, rules.
_BLOCK_START = re.compile(r"^(\s*)([-+=#]|\d+(?=[.)]))")


def escape(text: str) -> str:
    """Text that Markdown renders literally, on one line."""
    text = " ".join(text.split())
    text = _INLINE.sub(r"\\\1", text)
    match = _BLOCK_START.match(text)
    if match:
        # "1." -> "1\." ; "-" -> "\-": the marker is no longer a marker.
        head, marker = match.group(1), match.group(2)
        rest = text[match.end() :]
        text = head + (marker + "\\" + rest if marker[0].isdigit() else "\\" + marker + rest)
    return text


def _dots(n: int) -> str:
    return "" if n == 0 else f" ({n} dot{'s' if n != 1 else ''})"


def _area(area: AreaReport) -> list[str]:
    lines = [f"### {escape(area.name)}", ""]
    if not area.clusters:
        return [*lines, "_No notes._", ""]
    for cluster in area.clusters:
        if cluster.label is None:
            note = cluster.notes[0]
            lines.append(f"- {escape(note.text)}{_dots(note.dots)}")
            continue
        lines.append(f"- **{escape(cluster.label)}**{_dots(cluster.dots)}")
        lines += [f"  - {escape(n.text)}{_dots(n.dots)}" for n in cluster.notes]
    return [*lines, ""]


def _card(card: CardItem) -> str:
    votes = f"; {card.do} of {card.voters} said we do this" if card.voters else ""
    line = f"- **{escape(card.title)}** ({escape(card.level_name)}{votes}): {escape(card.text)}"
    if card.settled:
        line += " _Settled in discussion"
        line += f": {escape(card.decision_note)}_" if card.decision_note else "._"
    return line


def _function(f: FunctionReport) -> list[str]:
    recorded = escape(f.recorded_name) if f.recorded_name else "not recorded"
    lines = [
        f"## {escape(f.name)}",
        "",
        f"**Recorded level: {recorded}** · Card-derived level: {escape(f.card_level_name)} "
        f"({f.card_score:.2f}) · Agreement: {agreement_text(f.agreement, f.low_agreement)}",
        "",
        f"**Summary.** {escape(f.summary)}",
        "",
    ]
    if f.note:
        lines += [f"_{escape(f.signals)}_", ""]
    for area in f.areas:
        lines += _area(area)
    lines += ["### What to celebrate", ""]
    lines += [_card(c) for c in f.celebrate] or ["_No practice is agreed as in place yet._"]
    lines += ["", "### Next steps", ""]
    lines += [_card(c) for c in f.next_steps] or ["_Every practice card is in place._"]
    return [*lines, ""]


def _profile(report: Report) -> list[str]:
    lines = [
        "## Maturity profile",
        "",
        "| Core function | Recorded level | Card-derived level | Agreement | Voters |",
        "|---|---|---|---|---|",
    ]
    for f in report.functions:
        lines.append(
            f"| {escape(f.name)} | {escape(f.recorded_name or '—')} "
            f"| {escape(f.card_level_name)} ({f.card_score:.2f}) "
            f"| {agreement_text(f.agreement, f.low_agreement)} | {f.voters} |"
        )
    alpha = report.krippendorff_alpha
    reliability = "not enough votes" if alpha is None else f"{alpha:.2f}"
    return [
        *lines,
        "",
        "![Maturity profile: recorded level and card-derived score per core function][radar]",
        "",
        f"Agreement is the Tastle-Wierman consensus of the last level vote (0 to 1). "
        f"Card-vote reliability (Krippendorff's alpha): {reliability}.",
        "",
    ]


def render_report(report: Report) -> str:
    scale = " → ".join(escape(name) for name in report.scale)
    if report.anonymous:
        people = f"{report.participant_count} (anonymous workshop: names are not reported)"
    else:
        names = ", ".join(escape(name) for name in report.participant_names) or "none"
        people = f"{report.participant_count}: {names}"
    lines = [
        f"# {escape(report.title)}",
        "",
        f"{escape(report.definition_title)} · {report.date_text} · workshop {report.state_text}",
        "",
        f"- **Participants:** {people}",
        f"- **Scale:** {scale}",
        "",
    ]
    if report.state != "ended":
        lines += ["> **Interim report:** the workshop has not ended; results may change.", ""]
    lines += _profile(report)
    for function in report.functions:
        lines += _function(function)
    svg = base64.b64encode(str(render_svg(report)).encode("utf-8")).decode("ascii")
    lines.append(f"[radar]: data:image/svg+xml;base64,{svg}")
    return "\n".join(lines) + "\n"


def render(outcome: Outcome) -> bytes:
    return render_report(build(outcome)).encode("utf-8")
