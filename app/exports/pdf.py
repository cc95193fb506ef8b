"""PDF report: the report rendered as HTML (autoescaped Jinja), then printed to PDF.

Printing sits behind :class:`PdfRenderer`, the seam at this I/O edge: the server uses
:class:`WeasyPrintRenderer`; tests of the routes may swap in :class:`HtmlEchoRenderer`
to stay fast, while the PDF test uses WeasyPrint for real. The HTML carries everything it
needs (styles inline, the radar chart as inline SVG) and the URL fetcher refuses every URL,
so rendering never reaches the network or the file system, whatever the notes say.
"""

from __future__ import annotations

from functools import cache
from typing import Any, Protocol

from jinja2 import Environment

from app.exports.outcome import Outcome
from app.exports.radar import render_svg
from app.exports.report import Report, agreement_text, build
from app.web.templating import make_environment

MEDIA_TYPE = "application/pdf"


class PdfRenderer(Protocol):
    def render(self, html: str) -> bytes:
        """Print a self-contained HTML document to PDF bytes."""
        ...


class ResourceRefused(ValueError):
    pass


def _refusing_fetcher() -> Any:
    from weasyprint.urls import URLFetcher  # type: ignore[import-untyped]

    class RefusingFetcher(URLFetcher):  # type: ignore[misc]
        """Every resource is inline; anything else would be an escape from the document."""

        def fetch(self, url: str, headers: Any = None) -> Any:
            raise ResourceRefused(f"the report does not load external resources ({url[:60]})")

    return RefusingFetcher()


class WeasyPrintRenderer:
    def render(self, html: str) -> bytes:
        # Imported here: WeasyPrint loads Pango at import time, which only PDF output needs.
        from weasyprint import HTML  # type: ignore[import-untyped]

        document = HTML(string=html, base_url=None, url_fetcher=_refusing_fetcher())
        pdf: bytes = document.write_pdf()
        return pdf


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
