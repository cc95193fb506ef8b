"""Hostile note text (HTML, formulas, Markdown, very long, non-Latin) in every format.

Safe: nothing is interpreted as markup, a link, a heading or a formula. Intact: the text a
person wrote can be read back exactly.
"""

from __future__ import annotations

import csv
import io
import re
import subprocess
import zipfile
from pathlib import Path

import httpx
import pytest

from tests.conftest import FacilitatorLogin
from tests.exports.conftest import Seed, export
from tests.exports.factory import HOSTILE

TITLE = '<i>Ops</i> "=1+1" & co'
FORMULA = ("=", "+", "-", "@", "\t", "\r")


@pytest.fixture
async def hostile(seed: Seed) -> str:
    return await seed(title=TITLE, extra_how=HOSTILE)


async def test_json_keeps_every_character(
    client: httpx.AsyncClient, facilitator: FacilitatorLogin, hostile: str
) -> None:
    document = (await export(client, facilitator, hostile, format="json")).json()
    texts = [n["text"] for n in document["notes"]]
    for text in HOSTILE:
        assert texts.count(text) == 2, text  # once per core function
    assert document["workshop"]["title"] == TITLE


async def test_csv_cells_are_not_formulas_and_read_back(
    client: httpx.AsyncClient, facilitator: FacilitatorLogin, hostile: str
) -> None:
    response = await export(client, facilitator, hostile, format="csv")
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        tables = {
            name: list(csv.reader(io.StringIO(archive.read(name).decode("utf-8-sig"), newline="")))
            for name in archive.namelist()
        }
    for name, rows in tables.items():
        for row in rows:
            for cell in row:
                assert not cell.startswith(FORMULA), (name, cell)
    header, *notes = tables["notes.csv"]
    texts = [row[header.index("text")] for row in notes]
    for text in HOSTILE:
        expected = "'" + text if text.startswith(FORMULA) else text
        assert texts.count(expected) == 2, text
    numbers = tables["level_votes.csv"]
    assert all(row[5].isdigit() for row in numbers[1:]), "numbers stay numbers"


def _unescape(markdown_text: str) -> str:
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", markdown_text)


async def test_markdown_escapes_and_reads_back(
    client: httpx.AsyncClient, facilitator: FacilitatorLogin, hostile: str
) -> None:
    text = (await export(client, facilitator, hostile, format="markdown")).text
    # Every "<" (HTML) and "](" (a link) is backslash-escaped.
    assert re.search(r"(?<!\\)<", text) is None
    assert re.search(r"(?<!\\)\]\(", text) is None
    lines = text.splitlines()
    assert lines[0] == r'# \<i\>Ops\</i\> "=1+1" & co'
    bullets = [line[2:] for line in lines if line.startswith("- ")]
    for original in HOSTILE:
        assert sum(_unescape(b).startswith(original) for b in bullets) == 2, original
    assert r"- \# not a heading \| pipe \*star\*" in text
    assert "- 1\\. not a list" in text
    assert "- \\-2+3" in text


async def test_pdf_and_summary_show_the_text_not_markup(
    client: httpx.AsyncClient, facilitator: FacilitatorLogin, hostile: str, tmp_path: Path
) -> None:
    response = await export(client, facilitator, hostile, format="pdf")
    name = response.headers["content-disposition"]
    assert name.startswith('attachment; filename="i-ops-i-1-1-co-2025-03-04')
    pdf = response.content
    path = tmp_path / "r.pdf"
    path.write_bytes(pdf)
    text = subprocess.run(
        ["pdftotext", str(path), "-"], check=True, capture_output=True, timeout=60
    ).stdout.decode("utf-8")
    squashed = re.sub(r"\s+", "", text)
    for original in HOSTILE:
        assert re.sub(r"\s+", "", original) in squashed, original
    fonts = subprocess.run(
        ["pdffonts", str(path)], check=True, capture_output=True, timeout=60
    ).stdout.decode("utf-8")
    assert "Fallback" in fonts, f"no CJK font embedded:\n{fonts}"  # 中文 drawn, not boxes
    assert "Color-Emoji" in fonts, f"no emoji font embedded:\n{fonts}"  # 🙂 drawn, not a box
    assert TITLE in text

    page = await client.get(f"/workshops/{hostile}/summary", headers=facilitator.headers)
    assert page.status_code == 200
    assert "<script>alert" not in page.text and "<i>Ops" not in page.text
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page.text
