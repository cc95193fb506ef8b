"""Side-by-side comparison of several workshops: teams against each other, or over time.

Workshops are put in date order (ended, else started, else created). For each core
function, every workshop shows its recorded level, card-derived level and agreement, and
the *change* of the recorded level against the previous workshop (by date) that has the
same core function on the same scale. Levels on different scales (a three-level and a
four-level definition) are shown side by side but never subtracted. Pure: built from
scores that the caller read.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from datetime import datetime
from typing import Any

from app.exports.csv_export import Row, iso, write_csv
from app.exports.document import FunctionScore, Scores


@dataclass(frozen=True)
class ComparedWorkshop:
    id: str
    title: str
    date: datetime
    definition_id: str
    scale: tuple[str, ...]
    participants: int
    scores: Scores


@dataclass(frozen=True)
class Cell:
    workshop_id: str
    present: bool
    recorded_level: int | None = None
    recorded_level_name: str | None = None
    card_level_name: str | None = None
    card_score: float | None = None
    agreement: float | None = None
    low_agreement: bool = False
    voters: int = 0
    change: int | None = None  # recorded level steps since the previous comparable workshop
    compared_with: str | None = None  # that workshop's id


@dataclass(frozen=True)
class FunctionRow:
    function_id: str
    name: str
    cells: tuple[Cell, ...]


@dataclass(frozen=True)
class Comparison:
    workshops: tuple[ComparedWorkshop, ...]
    functions: tuple[FunctionRow, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "workshops": [
                {
                    "id": w.id,
                    "title": w.title,
                    "date": iso(w.date),
                    "definition_id": w.definition_id,
                    "scale": list(w.scale),
                    "participants": w.participants,
                }
                for w in self.workshops
            ],
            "functions": [
                {
                    "function_id": row.function_id,
                    "function_name": row.name,
                    "results": [asdict(cell) for cell in row.cells],
                }
                for row in self.functions
            ],
        }


def _cell(workshop: ComparedWorkshop, score: FunctionScore | None) -> Cell:
    if score is None:
        return Cell(workshop.id, present=False)
    return Cell(
        workshop_id=workshop.id,
        present=True,
        recorded_level=score.recorded_level,
        recorded_level_name=score.recorded_level_name,
        card_level_name=score.card_level.level_name or f"not yet {workshop.scale[0]}",
        card_score=score.card_level.score,
        agreement=score.voted.agreement,
        low_agreement=score.voted.low_agreement,
        voters=score.voted.n_voters,
    )


def compare(workshops: list[ComparedWorkshop]) -> Comparison:
    ordered = tuple(sorted(workshops, key=lambda w: (w.date, w.title, w.id)))
    names: dict[str, str] = {}
    for w in ordered:
        for f in w.scores.functions:
            names.setdefault(f.function_id, f.function_name)
    rows: list[FunctionRow] = []
    for function_id, name in names.items():
        cells: list[Cell] = []
        previous: tuple[ComparedWorkshop, Cell] | None = None
        for w in ordered:
            score = next((f for f in w.scores.functions if f.function_id == function_id), None)
            cell = _cell(w, score)
            if cell.present and previous is not None:
                before_w, before = previous
                if (
                    before_w.scale == w.scale
                    and before.recorded_level is not None
                    and cell.recorded_level is not None
                ):
                    change = cell.recorded_level - before.recorded_level
                    cell = replace(cell, change=change, compared_with=before_w.id)
            if cell.present:
                previous = (w, cell)
            cells.append(cell)
        rows.append(FunctionRow(function_id, name, tuple(cells)))
    return Comparison(ordered, tuple(rows))


def render_csv(comparison: Comparison) -> bytes:
    """One row per core function and workshop (spreadsheet-safe, see csv_export)."""
    header = ["function_id", "function", "workshop_id", "workshop", "date", "recorded_level"]
    header += ["recorded_level_name", "card_level_name", "card_score", "agreement"]
    header += ["low_agreement", "voters", "change"]
    titles = {w.id: w for w in comparison.workshops}
    rows: list[Row] = []
    for row in comparison.functions:
        for cell in row.cells:
            if not cell.present:
                continue
            w = titles[cell.workshop_id]
            rows.append(
                [
                    row.function_id,
                    row.name,
                    w.id,
                    w.title,
                    iso(w.date),
                    cell.recorded_level,
                    cell.recorded_level_name,
                    cell.card_level_name,
                    cell.card_score,
                    cell.agreement,
                    cell.low_agreement,
                    cell.voters,
                    cell.change,
                ]
            )
    return write_csv(header, rows)
