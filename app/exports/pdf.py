"""PDF report: the report rendered as HTML (autoescaped Jinja), then printed to PDF.

Printing sits behind :class:`PdfRenderer`, the seam at this I/O edge: the server uses
:class:`WeasyPrintRenderer`, which prints in a child process (`pdf_print.py`) held to
`PRINT_TIMEOUT_S`; tests of the routes may swap in :class:`HtmlEchoRenderer` to stay
fast, while the PDF test uses WeasyPrint for real. The HTML carries everything it
needs (styles inline, the radar chart as inline SVG) and the URL fetcher refuses every
URL, so printing never reaches the network or the file system, whatever the notes say.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
from functools import cache
from pathlib import Path
from typing import Protocol

from jinja2 import Environment

from app.exports import pdf_print
from app.exports.outcome import Outcome
from app.exports.radar import render_svg
from app.exports.report import Report, agreement_text, build
from app.services.errors import ServiceError
from app.web.templating import make_environment

log = logging.getLogger(__name__)

MEDIA_TYPE = "application/pdf"
# A print still running after this long is stopped (a small report prints in under a
# second, the child's start included).
PRINT_TIMEOUT_S = 60.0
# Prints under way at once per worker (each child takes about 70 MB); more wait.
PRINTS_AT_ONCE = 2
_printing = threading.BoundedSemaphore(PRINTS_AT_ONCE)
# The other exports carry the same content: named when a print fails.
INSTEAD = "the Markdown and JSON exports carry the same content"

# The printer, run as a child process by its path (it imports nothing from the app).
PRINTER = Path(pdf_print.__file__)
ResourceRefused = pdf_print.ResourceRefused
_refusing_fetcher = pdf_print.refusing_fetcher


class PdfRenderer(Protocol):
    def render(self, html: str) -> bytes:
        """Print a self-contained HTML document to PDF bytes."""
        ...


class PrintFailed(ServiceError):
    """The PDF could not be printed (too slow, or the printer failed); nothing else is
    affected, and the other formats still export."""

    status_code = 503
    code = "print_failed"


class WeasyPrintRenderer:
    """Prints in a child process (`pdf_print.py`): the worker's own loop keeps serving
    its live rooms meanwhile, and a print past `PRINT_TIMEOUT_S` is killed. At most
    `PRINTS_AT_ONCE` print at a time (called from the thread pool, so waiting here
    blocks no loop)."""

    def render(self, html: str) -> bytes:
        with _printing:
            return self._print(html)

    def _print(self, html: str) -> bytes:
        try:
            done = subprocess.run(  # noqa: S603 - this interpreter, our own file
                [sys.executable, "-I", str(PRINTER)],
                input=html.encode("utf-8"),
                capture_output=True,
                timeout=PRINT_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            log.warning("PDF print stopped after %s s", PRINT_TIMEOUT_S)
            raise PrintFailed(
                f"the PDF took longer than {PRINT_TIMEOUT_S:g} s to print and was stopped; "
                f"{INSTEAD}"
            ) from exc
        if done.returncode != 0 or not done.stdout.startswith(b"%PDF-"):
            tail = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:]
            log.error("PDF print failed (exit %s): %s", done.returncode, tail)
            raise PrintFailed(f"the PDF could not be printed; {INSTEAD}")
        return done.stdout


class HtmlEchoRenderer:
    """Test double: returns the HTML it was given, so a test can see what would be printed."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def render(self, html: str) -> bytes:
        self.calls.append(html)
        return html.encode("utf-8")


@cache
def _environment() -> Environment:
    env = make_environment()
    env.globals["agreement_text"] = agreement_text
    return env


def render_html(report: Report) -> str:
    template = _environment().get_template("exports/report.html")
    return template.render(report=report, radar=render_svg(report))


def render(outcome: Outcome, renderer: PdfRenderer) -> bytes:
    return renderer.render(render_html(build(outcome)))
