"""Print one self-contained HTML document to PDF: HTML on stdin, PDF on stdout.

The server runs this file as a child process for every PDF (`pdf.WeasyPrintRenderer`):
WeasyPrint is pure Python and holds the interpreter's lock while it lays out a page,
so printing in a worker's thread would slow every live room that worker serves (and
its first import alone stalls the worker's loop for about 150 ms). A child also lets a
print that runs too long be stopped. It imports nothing from the app, so it runs by
its path alone.

Every URL is refused: the report carries its styles and chart inline, and a note's
text must not make the printer reach the network or the file system.
"""

from __future__ import annotations

import sys
from typing import Any


class ResourceRefused(ValueError):
    pass


def refusing_fetcher() -> Any:
    from weasyprint.urls import URLFetcher  # type: ignore[import-untyped]

    class RefusingFetcher(URLFetcher):  # type: ignore[misc]
        """Every resource is inline; anything else would be an escape from the document."""

        def fetch(self, url: str, headers: Any = None) -> Any:
            raise ResourceRefused(f"the report does not load external resources ({url[:60]})")

    return RefusingFetcher()


def print_pdf(html: str) -> bytes:
    from weasyprint import HTML  # type: ignore[import-untyped]

    document = HTML(string=html, base_url=None, url_fetcher=refusing_fetcher())
    pdf: bytes = document.write_pdf()
    return pdf


def main() -> int:
    html = sys.stdin.buffer.read().decode("utf-8")
    sys.stdout.buffer.write(print_pdf(html))
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
