"""Comparing workshops: side by side, in date order, with the change in recorded level."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from typing import Any

import httpx

from app.domain.definitions import load_definition
from app.exports.compare import ComparedWorkshop, compare
from app.exports.document import Scores
from tests.conftest import FacilitatorLogin
from tests.exports.conftest import Seed
from tests.exports.factory import PROJECT_DEFINITIONS


def _scores(scale: list[str], levels: dict[str, int | None]) -> Scores:
    def function(fid: str, level: int | None) -> dict[str, Any]:
        voted = {
            "level": level, "level_name": None, "agreement": 0.8, "modal_share": 0.8,
            "modal_level": level, "modal_level_name": None, "n_voters": 5,
            "counts": [0] * len(scale), "low_agreement": False,
        }  # fmt: skip
        return {
            "function_id": fid, "function_name": fid.title(), "outcome_level": level,
            "outcome_level_name": None, "recorded_level": level,
            "recorded_level_name": None if level is None else scale[level],
            "recorded_note": None, "voted": voted, "rounds": [voted],
            "card_level": {"level": None, "level_name": None, "score": 0.5,
                           "practised": {}, "n_cards_voted": 1},
        }  # fmt: skip

    return Scores.model_validate(
        {
            "scale": scale,
            "functions": [function(f, lv) for f, lv in levels.items()],
            "reliability": {"krippendorff_alpha": None},
        }
    )


def _workshop(
    wid: str, year: int, scale: list[str], levels: dict[str, int | None]
) -> ComparedWorkshop:
    return ComparedWorkshop(
        id=wid,
        title=f"Team {wid}",
        date=datetime(year, 1, 1, tzinfo=UTC),
        definition_id="d",
        scale=tuple(scale),
        participants=5,
        scores=_scores(scale, levels),
    )


THREE = ["Emerging", "Established", "Exemplary"]
FOUR = ["Initial", "Developing", "Established", "Leading"]


def test_change_against_the_previous_comparable_workshop() -> None:
    result = compare(
        [
            _workshop("c", 2025, THREE, {"measurement": 2, "culture": None}),
            _workshop("a", 2023, THREE, {"measurement": 0, "culture": 1}),
            _workshop("x", 2024, FOUR, {"measurement": 3}),
            _workshop("b", 2024, THREE, {"measurement": 1, "culture": 1}),
        ]
    )
    assert [w.id for w in result.workshops] == ["a", "b", "x", "c"]
    by_function = {row.function_id: row for row in result.functions}
    measurement = by_function["measurement"].cells
    assert [c.change for c in measurement] == [None, 1, None, None]
    # "x" is on another scale: no change is computed against it, nor across it.
    assert measurement[2].present and measurement[2].recorded_level_name == "Leading"
    assert measurement[3].compared_with is None
    culture = by_function["culture"].cells
    assert [c.present for c in culture] == [True, True, False, True]
    assert [c.change for c in culture] == [None, 0, None, None]  # nothing recorded in "c"


def test_change_skips_workshops_without_the_function() -> None:
    result = compare(
        [
            _workshop("a", 2023, THREE, {"measurement": 0}),
            _workshop("b", 2024, THREE, {"culture": 1}),
            _workshop("c", 2025, THREE, {"measurement": 2}),
        ]
    )
    cells = next(r for r in result.functions if r.function_id == "measurement").cells
    assert [c.present for c in cells] == [True, False, True]
    assert cells[2].change == 2 and cells[2].compared_with == "a"


async def test_compare_api_page_and_csv(
    client: httpx.AsyncClient, facilitator: FacilitatorLogin, seed: Seed
) -> None:
    later = await seed(title="CBP 2025", start=datetime(2025, 3, 4, 14, tzinfo=UTC), level_shift=1)
    earlier = await seed(title="CBP 2024", start=datetime(2024, 3, 4, 14, tzinfo=UTC))
    four_level = load_definition(PROJECT_DEFINITIONS / "govcx-four-level.yaml")
    other = await seed(title="TSA channels", definition=four_level)
    query = f"workshop={later}&workshop={earlier}&workshop={other}&workshop={later}"

    response = await client.get(f"/api/compare?{query}", headers=facilitator.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert [w["title"] for w in body["workshops"]] == ["CBP 2024", "CBP 2025", "TSA channels"]
    assert body["workshops"][2]["scale"] == ["Initial", "Developing", "Established", "Leading"]
    measurement = next(f for f in body["functions"] if f["function_id"] == "measurement")
    assert [r["recorded_level_name"] for r in measurement["results"]] == [
        "Established", "Exemplary", None,
    ]  # fmt: skip
    assert [r["change"] for r in measurement["results"]] == [None, 1, None]
    assert measurement["results"][2]["present"] is False
    assert {f["function_id"] for f in body["functions"]} >= {"measurement", "digital"}

    page = await client.get(f"/compare?{query}", headers=facilitator.headers)
    assert page.status_code == 200
    assert "+1 level" in page.text and "Not in this workshop" in page.text
    assert page.text.count('type="checkbox"') == 3

    exported = await client.get(f"/api/compare?{query}&format=csv", headers=facilitator.headers)
    assert exported.headers["content-disposition"] == 'attachment; filename="comparison.csv"'
    rows = list(csv.DictReader(io.StringIO(exported.content.decode("utf-8-sig"))))
    changes = [r["change"] for r in rows if r["function_id"] == "measurement"]
    assert changes == ["", "1"]

    empty = await client.get("/api/compare", headers=facilitator.headers)
    assert empty.status_code == 422 and "at least one workshop" in empty.json()["detail"]
    blank_page = await client.get("/compare", headers=facilitator.headers)
    assert blank_page.status_code == 200 and "CBP 2024" in blank_page.text
