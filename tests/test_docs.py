"""The docs stay true: every test and source file they name exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
TEST_REF = re.compile(r"(tests/[\w/]+\.py)(?:::(\w+))?")
FILE_REF = re.compile(r"`((?:app|bench|scripts|deploy|migrations|static)/[\w/.-]+\.\w+)`")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_named_tests_and_files_exist(doc: Path) -> None:
    text = doc.read_text()
    problems = []
    for path, name in set(TEST_REF.findall(text)):
        file = ROOT / path
        if not file.is_file():
            problems.append(f"no file {path}")
        elif name and not re.search(rf"(def|class) {name}\b", file.read_text()):
            problems.append(f"no test {path}::{name}")
    for path in set(FILE_REF.findall(text)):
        if not (ROOT / path).exists():
            problems.append(f"no file {path}")
    assert not problems, f"{doc.name} names what does not exist: {problems}"


def test_docs_name_tests() -> None:
    """The checker sees references at all (so the test above can fail)."""
    security = (ROOT / "docs" / "security.md").read_text()
    assert len(set(TEST_REF.findall(security))) >= 10
