"""Who may export, compare and import; formats, file names; the summary page."""

from __future__ import annotations

import re

import httpx
import pytest

from app.config import Settings
from app.exports.pdf import HtmlEchoRenderer
from app.web.exports import get_pdf_renderer
from tests.conftest import FacilitatorLogin, make_facilitator
from tests.exports.conftest import Seed, export


async def test_only_the_owner_gets_anything(
    client: httpx.AsyncClient, facilitator: FacilitatorLogin, seed: Seed, settings: Settings
) -> None:
    workshop_id = await seed()
    other = await make_facilitator(client, settings, "other@agency.gov")
    paths = [
        *(f"/api/workshops/{workshop_id}/export?format={f}" for f in ("json", "csv", "md", "pdf")),
        f"/api/compare?workshop={workshop_id}",
        f"/api/compare?workshop={workshop_id}&format=csv",
    ]
    for path in paths:
        anonymous = await client.get(path)
        assert anonymous.status_code == 401, path
        stranger = await client.get(path, headers=other.headers)
        assert stranger.status_code == 404, path
        assert stranger.json() == {"detail": "no such workshop", "code": "not_found"}
    page = await client.get(f"/workshops/{workshop_id}/summary", headers=other.headers)
    assert page.status_code == 404 and "no such workshop" in page.text
    compare_page = await client.get(f"/compare?workshop={workshop_id}", headers=other.headers)
    assert compare_page.status_code == 404
    for path in (f"/workshops/{workshop_id}/summary", "/compare"):
        redirect = await client.get(path, follow_redirects=False)
        assert redirect.status_code == 303 and redirect.headers["location"] == "/signin"
    missing = await client.get("/api/workshops/nope/export", headers=facilitator.headers)
    assert missing.status_code == 404


async def test_format_and_table_errors(
    client: httpx.AsyncClient, facilitator: FacilitatorLogin, seed: Seed
) -> None:
    workshop_id = await seed()
    url = f"/api/workshops/{workshop_id}/export"
    for params, words in (
        ({"format": "docx"}, "unknown format 'docx'"),
        ({"format": "csv", "table": "people"}, "unknown table 'people'"),
        ({"format": "json", "table": "notes"}, "only to format=csv"),
    ):
        response = await client.get(url, params=params, headers=facilitator.headers)
        assert response.status_code == 422, params
        assert words in response.json()["detail"]
        assert response.json()["code"] == "invalid"
    default = await client.get(url, headers=facilitator.headers)
    assert default.headers["content-type"] == "application/json"
    assert default.headers["cache-control"] == "private, no-store"


async def test_export_works_before_the_workshop_ends(
    client: httpx.AsyncClient, facilitator: FacilitatorLogin, seed: Seed
) -> None:
    workshop_id = await seed(state="running")
    report = (await export(client, facilitator, workshop_id, format="md")).text
    assert "Interim report" in report
    document = (await export(client, facilitator, workshop_id, format="json")).json()
    assert document["workshop"]["state"] == "running"
    assert document["workshop"]["ended_at"] is None


async def test_anonymous_workshop_exports_carry_no_names(
    client: httpx.AsyncClient, facilitator: FacilitatorLogin, seed: Seed
) -> None:
    workshop_id = await seed(anonymous=True)
    bodies = [
        (await export(client, facilitator, workshop_id, format=f)).content for f in ("json", "md")
    ]
    csv_zip = await export(client, facilitator, workshop_id, format="csv")
    import io
    import zipfile

    with zipfile.ZipFile(io.BytesIO(csv_zip.content)) as archive:
        bodies += [archive.read(name) for name in archive.namelist()]
    page = await client.get(f"/workshops/{workshop_id}/summary", headers=facilitator.headers)
    bodies.append(page.content)
    for body in bodies:
        text = body.decode("utf-8")
        for name in ("Ana", "Díaz", "Sam Lee", "Kofi", "Mei Chen", "Left Early", "CBP", "USCIS"):
            assert name not in text, name
    assert b"Participant 1" in bodies[2]  # card_votes.csv uses the pseudonyms


async def test_pdf_goes_through_the_renderer_seam(
    client: httpx.AsyncClient, facilitator: FacilitatorLogin, seed: Seed
) -> None:
    workshop_id = await seed()
    echo = HtmlEchoRenderer()
    client.app.dependency_overrides[get_pdf_renderer] = lambda: echo  # type: ignore[attr-defined]
    try:
        response = await export(client, facilitator, workshop_id, format="pdf")
    finally:
        client.app.dependency_overrides.clear()  # type: ignore[attr-defined]
    [html] = echo.calls
    assert response.content == html.encode()
    assert "<svg" in html and "Maturity profile" in html
    # Self-contained: no URL the printer could fetch.
    assert not re.search(r"""(src|href)=["']?(https?:|file:|//)""", html)


@pytest.mark.parametrize("anonymous", [False, True])
async def test_summary_page_links_all_four_downloads(
    client: httpx.AsyncClient, facilitator: FacilitatorLogin, seed: Seed, anonymous: bool
) -> None:
    workshop_id = await seed(anonymous=anonymous)
    page = await client.get(f"/workshops/{workshop_id}/summary", headers=facilitator.headers)
    assert page.status_code == 200
    links = re.findall(r'href="(/api/workshops/[^"]+)"', page.text)
    for fmt in ("pdf", "markdown", "csv", "json"):
        link = f"/api/workshops/{workshop_id}/export?format={fmt}"
        assert link in links, fmt
        # The links work with the page's own credentials.
        got = await client.get(link, headers=facilitator.headers)
        assert got.status_code == 200 and got.headers["content-disposition"].startswith(
            "attachment"
        )
    assert "<svg" in page.text and "Maturity profile" in page.text
    assert "Quarterly review meeting" in page.text
    assert ("Ana Díaz" in page.text) is not anonymous
    css = await client.get("/exports/exports.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
