"""Outcomes: a workshop's results as JSON, CSV, Markdown and PDF, import, and comparison.

``outcome.gather`` reads a workshop once into an :class:`~app.exports.outcome.Outcome`
(the JSON document of ``document.py`` plus its definition); every format is then a pure
``render(outcome) -> bytes``. ``importer`` turns a JSON export back into a workshop, and
``compare`` lines several workshops up. Reference: docs/exports.md.
"""
