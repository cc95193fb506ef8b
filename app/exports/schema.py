"""Print the export's JSON Schema: ``python -m app.exports.schema > docs/export.schema.json``.

A test fails when the published file and the model disagree, so the schema in ``docs/`` is
always the one the import enforces.
"""

from __future__ import annotations

import json
import sys

from app.exports.document import json_schema


def schema_text() -> str:
    return json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    sys.stdout.write(schema_text())
