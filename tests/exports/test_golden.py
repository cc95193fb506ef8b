"""Golden files: the Markdown report and every CSV table, byte for byte, on both databases."""

from __future__ import annotations

import io
import zipfile

import httpx

from tests.conftest import FacilitatorLogin
from tests.exports.conftest import Seed, check_golden, export


async def test_markdown_report_matches_golden(
    client: httpx.AsyncClient, facilitator: FacilitatorLogin, seed: Seed
) -> None:
    workshop_id = await seed()
    response = await export(client, facilitator, workshop_id, format="markdown")
    assert response.headers["content-type"] == "text/markdown; charset=utf-8"
    check_golden("report.md", response.content)


async def test_anonymous_markdown_report_matches_golden(
    client: httpx.AsyncClient, facilitator: FacilitatorLogin, seed: Seed
) -> None:
    workshop_id = await seed(anonymous=True, state="running", title="Anonymous pulse check")
    response = await export(client, facilitator, workshop_id, format="md")
    check_golden("report-anonymous.md", response.content)


async def test_csv_tables_match_golden(
    client: httpx.AsyncClient, facilitator: FacilitatorLogin, seed: Seed
) -> None:
    workshop_id = await seed()
    response = await export(client, facilitator, workshop_id, format="csv")
    assert response.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        names = archive.namelist()
        assert names == [
            "card_votes.csv",
            "level_votes.csv",
            "notes.csv",
            "decisions.csv",
            "scores.csv",
        ]
        for name in names:
            content = archive.read(name)
            assert content.startswith("\ufeff".encode()), "Excel needs the BOM to read UTF-8"
            check_golden(name, content)
            single = await export(
                client, facilitator, workshop_id, format="csv", table=name.removesuffix(".csv")
            )
            assert single.content == content
            assert single.headers["content-type"] == "text/csv; charset=utf-8"
    again = await export(client, facilitator, workshop_id, format="csv")
    assert again.content == response.content, "the zip is deterministic"
