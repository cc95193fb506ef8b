"""The PDF report, printed by WeasyPrint for real and read back with poppler."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import cast

import httpx
import pytest
from PIL import Image

from app.exports.pdf import ResourceRefused, WeasyPrintRenderer, _refusing_fetcher
from tests.conftest import FacilitatorLogin
from tests.exports.conftest import Seed, export

pytestmark = pytest.mark.skipif(
    shutil.which("pdftotext") is None or shutil.which("pdftoppm") is None,
    reason="poppler-utils missing: run scripts/system-deps.sh",
)


def _text(pdf: bytes, tmp_path: Path) -> str:
    path = tmp_path / "report.pdf"
    path.write_bytes(pdf)
    out = subprocess.run(
        ["pdftotext", "-layout", str(path), "-"], check=True, capture_output=True, timeout=60
    )
    return out.stdout.decode("utf-8")


async def test_pdf_report_reads_like_the_findings(
    client: httpx.AsyncClient, facilitator: FacilitatorLogin, seed: Seed, tmp_path: Path
) -> None:
    workshop_id = await seed()
    response = await export(client, facilitator, workshop_id, format="pdf")
    assert response.headers["content-type"] == "application/pdf"
    assert response.content.startswith(b"%PDF-")
    text = _text(response.content, tmp_path)
    for expected in (
        "Passport Services CX",
        "Maturity profile",
        "Measurement",
        "Service Design & Improvement",
        "Recorded level",
        "Established",
        "Emerging",
        "Agreement",
        "0.69",
        "Where we are now",
        "Where we hope to be",
        "How we'll get there",
        "We run a yearly survey",
        "Quarterly review meeting",
        "What to celebrate",
        "Next steps",
        "Ana Díaz (CBP)",
        "Participants: 4",
        "Page 1 of",
    ):
        assert expected in text, expected
    # Most dot-voted first: the 3-dot note comes before the 2-dot group.
    how = text.index("How we'll get there")
    assert text.index("Quarterly review meeting", how) < text.index("Ownership", how)
    assert "Left Early" not in text, "removed participants are not listed"

    (tmp_path / "report.pdf").write_bytes(response.content)
    subprocess.run(
        [
            "pdftoppm",
            "-png",
            "-r",
            "60",
            "-f",
            "1",
            "-l",
            "1",
            str(tmp_path / "report.pdf"),
            str(tmp_path / "page"),
        ],
        check=True,
        timeout=60,
    )
    [png] = list(tmp_path.glob("page*.png"))
    with Image.open(png) as image:
        assert image.width > 400 and image.height > 500
        # The radar chart's blue polygon is on the first page.
        colours = cast(
            list[tuple[int, tuple[int, int, int]]], image.convert("RGB").getcolors(1 << 20)
        )
        blue = sum(n for n, (r, _g, b) in colours if b > 120 and r < 80)
        assert blue > 500, "no chart drawn"


async def test_anonymous_pdf_has_no_names(
    client: httpx.AsyncClient, facilitator: FacilitatorLogin, seed: Seed, tmp_path: Path
) -> None:
    workshop_id = await seed(anonymous=True)
    text = _text((await export(client, facilitator, workshop_id, format="pdf")).content, tmp_path)
    assert "anonymous workshop" in text
    for name in ("Ana", "Sam Lee", "Kofi", "Mei Chen", "CBP", "TSA"):
        assert name not in text, name


def test_renderer_never_fetches_resources() -> None:
    with pytest.raises(ResourceRefused):
        _refusing_fetcher()("http://127.0.0.1:9/tracker.png")
    html = (
        '<html><body><p>x</p><img src="http://127.0.0.1:9/x.png">'
        '<link rel="stylesheet" href="file:///etc/passwd"></body></html>'
    )
    pdf = WeasyPrintRenderer().render(html)
    assert pdf.startswith(b"%PDF-")
