"""The PDF report, printed by WeasyPrint for real and read back with poppler."""

from __future__ import annotations

import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import cast

import httpx
import pytest
from PIL import Image

from app.exports import pdf
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
    printed = WeasyPrintRenderer().render(html)
    assert printed.startswith(b"%PDF-")


async def _pdf_refused(client: httpx.AsyncClient, fac: FacilitatorLogin, wid: str) -> str:
    """The PDF export's answer when printing fails: 503 with a reason, and the other
    formats still export."""
    response = await client.get(
        f"/api/workshops/{wid}/export", params={"format": "pdf"}, headers=fac.headers
    )
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["code"] == "print_failed"
    assert "Markdown and JSON" in body["detail"]
    assert (await export(client, fac, wid, format="json")).json()
    return str(body["detail"])


async def test_a_print_that_runs_too_long_is_stopped(
    client: httpx.AsyncClient,
    facilitator: FacilitatorLogin,
    seed: Seed,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Printing runs in a child process, so it can be stopped: no in-process print could
    be (and WeasyPrint holding the interpreter's lock would slow the worker's rooms)."""
    workshop_id = await seed()
    monkeypatch.setattr(pdf, "PRINT_TIMEOUT_S", 0.001)
    detail = await _pdf_refused(client, facilitator, workshop_id)
    assert "longer than 0.001 s" in detail


async def test_a_printer_that_fails_is_reported(
    client: httpx.AsyncClient,
    facilitator: FacilitatorLogin,
    seed: Seed,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    workshop_id = await seed()
    broken = tmp_path / "broken_printer.py"
    broken.write_text("import sys\nsys.stdout.write('not a pdf')\nsys.exit(1)\n")
    monkeypatch.setattr(pdf, "PRINTER", broken)
    detail = await _pdf_refused(client, facilitator, workshop_id)
    assert detail.startswith("the PDF could not be printed")


def test_at_most_two_prints_at_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Each print is a child process of about 70 MB: a worker runs at most
    `PRINTS_AT_ONCE` of them, and the others wait their turn (none is refused)."""
    printer = tmp_path / "counting_printer.py"
    printer.write_text(
        "import fcntl, sys, time\n"
        f"path = {str(tmp_path / 'count')!r}\n"
        "def bump(by):\n"
        "    with open(path, 'a+') as f:\n"
        "        fcntl.flock(f, fcntl.LOCK_EX)\n"
        "        f.seek(0)\n"
        "        now, most = (int(x) for x in (f.read() or '0 0').split())\n"
        "        now += by\n"
        "        f.seek(0); f.truncate(); f.write(f'{now} {max(most, now)}')\n"
        "bump(1)\n"
        "time.sleep(0.3)\n"
        "bump(-1)\n"
        "sys.stdout.write('%PDF-' + sys.stdin.read())\n"
    )
    monkeypatch.setattr(pdf, "PRINTER", printer)
    renderer = WeasyPrintRenderer()
    with ThreadPoolExecutor(max_workers=5) as pool:
        printed = list(pool.map(renderer.render, [f"doc {i}" for i in range(5)]))
    assert printed == [f"%PDF-doc {i}".encode() for i in range(5)]
    now, most = (int(x) for x in (tmp_path / "count").read_text().split())
    assert now == 0
    assert 1 <= most <= pdf.PRINTS_AT_ONCE == 2
