"""CSV export: one file per table, zipped, ready for a spreadsheet.

Files are UTF-8 with a byte-order mark (so Excel detects UTF-8), comma-separated, CRLF line
ends (RFC 4180). Against formula injection (OWASP "CSV Injection"), every text cell that
starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return gets a leading single
quote: spreadsheets then show it as text. Numbers are written as numbers and never get
the quote (a level change of -1 stays a number).
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime

from app.exports.outcome import Outcome

ZIP_MEDIA_TYPE = "application/zip"
CSV_MEDIA_TYPE = "text/csv; charset=utf-8"
BOM = "\ufeff"
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# A fixed timestamp keeps the zip byte-identical for identical data.
ZIP_DATE = (2000, 1, 1, 0, 0, 0)

Cell = str | int | float | bool | None
Row = Sequence[Cell]


def iso(moment: datetime) -> str:
    """UTC timestamp written like the JSON export: 2025-03-04T14:00:00Z."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def safe_cell(value: Cell) -> str | int | float:
    """A cell a spreadsheet will not evaluate; None becomes an empty cell."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return value
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def write_csv(header: Sequence[str], rows: Iterable[Row]) -> bytes:
    buffer = io.StringIO()
    buffer.write(BOM)
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([safe_cell(cell) for cell in row])
    return buffer.getvalue().encode("utf-8")


def _card_votes(o: Outcome) -> tuple[list[str], list[Row]]:
    header = ["function_id", "function", "card_id", "card", "card_level", "participant"]
    header += ["participant_removed", "choice", "updated_at"]
    removed = {p.id for p in o.document.participants if p.removed}
    rows: list[Row] = []
    for v in o.document.card_votes:
        card = o.definition.card(v.card_id)
        rows.append(
            [
                v.function_id,
                o.definition.function(v.function_id).name,
                v.card_id,
                card.title,
                o.definition.level(card.level).name,
                o.participant_labels[v.participant],
                v.participant in removed,
                v.choice,
                iso(v.updated_at),
            ]
        )
    return header, rows


def _level_votes(o: Outcome) -> tuple[list[str], list[Row]]:
    header = ["function_id", "function", "round", "participant", "participant_removed"]
    header += ["level", "level_name", "updated_at"]
    removed = {p.id for p in o.document.participants if p.removed}
    rows: list[Row] = [
        [
            v.function_id,
            o.definition.function(v.function_id).name,
            v.round,
            o.participant_labels[v.participant],
            v.participant in removed,
            v.level,
            o.definition.level_names[v.level],
            iso(v.updated_at),
        ]
        for v in o.document.level_votes
    ]
    return header, rows


def _notes(o: Outcome) -> tuple[list[str], list[Row]]:
    header = ["note_id", "function_id", "function", "area_id", "area", "group", "text"]
    header += ["colour", "author", "dots", "created_at", "updated_at"]
    areas = {a.id: a.name for a in o.definition.board.areas}
    groups = {g.id: g.label for g in o.document.note_groups}
    rows: list[Row] = [
        [
            n.id,
            n.function_id,
            o.definition.function(n.function_id).name,
            n.area,
            areas.get(n.area, n.area),
            groups.get(n.group) if n.group else None,
            n.text,
            n.colour,
            o.author_label(n.author),
            len(n.dots),
            iso(n.created_at),
            iso(n.updated_at),
        ]
        for n in o.document.notes
    ]
    return header, rows


def _decisions(o: Outcome) -> tuple[list[str], list[Row]]:
    header = ["kind", "function_id", "function", "card_id", "card", "level", "level_name"]
    header += ["practised", "note", "decided_at"]
    rows: list[Row] = []
    for c in o.document.card_decisions:
        name = o.definition.function(c.function_id).name
        title = o.definition.card(c.card_id).title
        card: list[Cell] = ["card", c.function_id, name, c.card_id, title, None, None]
        rows.append([*card, c.practised, c.note, iso(c.decided_at)])
    for x in o.document.level_decisions:
        name = o.definition.function(x.function_id).name
        level_name = o.definition.level_names[x.level]
        level: list[Cell] = ["level", x.function_id, name, None, None, x.level, level_name]
        rows.append([*level, None, x.note, iso(x.recorded_at)])
    return header, rows


def _scores(o: Outcome) -> tuple[list[str], list[Row]]:
    header = ["function_id", "function", "recorded_level", "recorded_level_name"]
    header += ["card_level", "card_level_name", "card_score", "voted_level", "voted_level_name"]
    header += ["agreement", "modal_share", "voters", "rounds", "low_agreement", "recorded_note"]
    rows: list[Row] = [
        [
            f.function_id,
            f.function_name,
            f.recorded_level,
            f.recorded_level_name,
            f.card_level.level,
            f.card_level.level_name,
            f.card_level.score,
            f.voted.level,
            f.voted.level_name,
            f.voted.agreement,
            f.voted.modal_share,
            f.voted.n_voters,
            len(f.rounds),
            f.voted.low_agreement,
            f.recorded_note,
        ]
        for f in o.document.scores.functions
    ]
    return header, rows


TABLES: dict[str, Callable[[Outcome], tuple[list[str], list[Row]]]] = {
    "card_votes": _card_votes,
    "level_votes": _level_votes,
    "notes": _notes,
    "decisions": _decisions,
    "scores": _scores,
}


def render_table(outcome: Outcome, table: str) -> bytes:
    """One table as a CSV file; ``table`` is a key of :data:`TABLES`."""
    header, rows = TABLES[table](outcome)
    return write_csv(header, rows)


def render(outcome: Outcome) -> bytes:
    """Every table, as ``<table>.csv`` files in one zip."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in TABLES:
            info = zipfile.ZipInfo(f"{name}.csv", date_time=ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, render_table(outcome, name))
    return buffer.getvalue()
