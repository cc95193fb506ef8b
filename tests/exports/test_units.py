"""Small pure pieces: Markdown escaping, CSV cells, file names, the radar chart."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from app.exports.csv_export import safe_cell, write_csv
from app.exports.markdown import escape
from app.exports.radar import render_svg
from app.exports.report import FunctionReport, Report
from app.exports.service import file_stem, parse_format


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain words", "plain words"),
        ("<b>x</b>", r"\<b\>x\</b\>"),
        ("a | b", r"a \| b"),
        ("*x* _y_ `z`", r"\*x\* \_y\_ \`z\`"),
        ("[l](javascript:x)", r"\[l\](javascript:x)"),
        ("# h", r"\# h"),
        ("- item", r"\- item"),
        ("+ item", r"\+ item"),
        ("12. item", r"12\. item"),
        ("3) item", r"3\) item"),
        ("AT&T &amp; co & more", r"AT\&T \&amp; co & more"),
        ("two\nlines\r\n  here", "two lines here"),
        ("back\\slash", r"back\\slash"),
        ("Ελληνικά 中文 🙂", "Ελληνικά 中文 🙂"),
    ],
)
def test_markdown_escape(text: str, expected: str) -> None:
    assert escape(text) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("=1+1", "'=1+1"),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("a=1", "a=1"),
        ("", ""),
        (None, ""),
        (-1, -1),
        (0.5, 0.5),
        (True, "true"),
    ],
)
def test_csv_cells_never_start_a_formula(value: object, expected: object) -> None:
    assert safe_cell(value) == expected  # type: ignore[arg-type]


def test_csv_is_excel_friendly() -> None:
    data = write_csv(["a", "b"], [["x,y", 'say "hi"'], ["line\nbreak", 3]])
    assert data == '\ufeffa,b\r\n"x,y","say ""hi"""\r\n"line\nbreak",3\r\n'.encode()


def test_file_names_are_plain_ascii() -> None:
    assert file_stem('Ops "=1" / Díaz\r\n', "2025-01-02") == "ops-1-diaz-2025-01-02"
    assert file_stem("東京", "2025-01-02") == "workshop-2025-01-02"
    assert parse_format("MD").value == "markdown"


def _function(name: str, recorded: int | None, score: float) -> FunctionReport:
    return FunctionReport(
        function_id="f", name=name, description="", recorded_level=recorded,
        recorded_name=None if recorded is None else "Level", card_level_name="Level",
        card_score=score, agreement=None, modal_share=None, voters=0, rounds=0,
        low_agreement=False, note=None, summary="", signals="", areas=(),
        celebrate=(), next_steps=(),
    )  # fmt: skip


def test_radar_escapes_names_and_plots_levels() -> None:
    report = Report(
        title="t",
        definition_title="d",
        state="ended",
        date=datetime(2025, 1, 1, tzinfo=UTC),
        anonymous=False,
        participant_count=0,
        participant_names=(),
        scale=("Low", "<High & Mighty>"),
        functions=(
            _function('<script>alert("x")</script>', 1, 2.0),
            _function("B", None, 0.5),
            _function("C", 0, 1.0),
        ),
        krippendorff_alpha=None,
    )
    svg = str(render_svg(report))
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    assert "&lt;High &amp; Mighty&gt;" in svg
    assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>")
    # The recorded level 2 of 2 reaches the outer ring: the top point is at CY - RADIUS.
    assert 'points="320.0,50.0 ' in svg
    long_name = replace(report.functions[1], name="Service Design & Continuous Improvement")
    wrapped = str(render_svg(replace(report, functions=(report.functions[0], long_name))))
    assert wrapped.count("<tspan") == 1 + 3
