"""JSON export: valid against the published schema, and import gives the same document back."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from sqlmodel import func, select

from app.config import Settings
from app.db.models import CardVote, Event, Note, Participant, Workshop
from app.domain.definitions import load_definition
from app.exports.schema import schema_text
from tests.conftest import FacilitatorLogin, make_facilitator
from tests.exports.conftest import Seed, db_session, export
from tests.exports.factory import HOSTILE, PROJECT_DEFINITIONS

SCHEMA_FILE = Path(__file__).parents[2] / "docs" / "export.schema.json"


def test_published_schema_is_up_to_date() -> None:
    assert SCHEMA_FILE.read_text(encoding="utf-8") == schema_text(), (
        "run: python -m app.exports.schema > docs/export.schema.json"
    )
    jsonschema.Draft202012Validator.check_schema(json.loads(schema_text()))


async def _import(
    client: httpx.AsyncClient, fac: FacilitatorLogin, body: bytes | dict[str, Any]
) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {**fac.headers, "Content-Type": "application/json"}
    return await client.post("/api/workshops/import", content=content, headers=headers)


async def _counts(settings: Settings) -> dict[str, int]:
    counts = {}
    async with db_session(settings) as session:
        for model in (Workshop, Participant, CardVote, Note, Event):
            n = (await session.exec(select(func.count()).select_from(model))).one()
            counts[model.__name__] = int(n)
    return counts


@pytest.mark.parametrize("anonymous", [False, True])
async def test_export_is_valid_and_round_trips_byte_for_byte(
    client: httpx.AsyncClient, facilitator: FacilitatorLogin, seed: Seed, anonymous: bool
) -> None:
    workshop_id = await seed(anonymous=anonymous)
    first = await export(client, facilitator, workshop_id, format="json")
    assert first.headers["content-type"] == "application/json"
    assert first.headers["content-disposition"] == (
        'attachment; filename="passport-services-cx-2025-03-04.json"'
    )
    document = first.json()
    jsonschema.validate(document, json.loads(SCHEMA_FILE.read_text(encoding="utf-8")))
    assert document["schema_version"] == 1
    assert workshop_id not in first.text, "no database ids in the document"
    assert len(document["notes"]) == 12 and document["notes"][5]["dots"]
    assert {v["choice"] for v in document["card_votes"]} == {"do", "dont", "unsure"}
    assert [r["round"] for r in document["level_rounds"]] == [1, 2, 1]

    imported = await _import(client, facilitator, first.content)
    assert imported.status_code == 201, imported.text
    copy_info = imported.json()
    assert copy_info["id"] != workshop_id
    assert copy_info["state"] == "ended" and copy_info["participants"] == 4

    second = await export(client, facilitator, copy_info["id"], format="json")
    assert second.content == first.content
    # The reports come from the same data, so they match too.
    for fmt in ("markdown", "csv"):
        a = await export(client, facilitator, workshop_id, format=fmt)
        b = await export(client, facilitator, copy_info["id"], format=fmt)
        assert a.content == b.content, fmt


async def test_import_is_owned_by_the_importer_and_logged(
    client: httpx.AsyncClient, facilitator: FacilitatorLogin, seed: Seed, settings: Settings
) -> None:
    workshop_id = await seed()
    document = (await export(client, facilitator, workshop_id, format="json")).content
    other = await make_facilitator(client, settings, "other@agency.gov")
    imported = await _import(client, other, document)
    assert imported.status_code == 201
    new_id = imported.json()["id"]
    assert (await client.get(f"/api/workshops/{new_id}", headers=other.headers)).status_code == 200
    assert (
        await client.get(f"/api/workshops/{new_id}", headers=facilitator.headers)
    ).status_code == 404
    async with db_session(settings) as session:
        events = (await session.exec(select(Event).where(Event.workshop_id == new_id))).all()
        original = await session.get(Workshop, workshop_id)
        copy_row = await session.get(Workshop, new_id)
        assert original is not None and copy_row is not None
        assert copy_row.join_code != original.join_code
        assert copy_row.ended_at == original.ended_at
        facilitator_notes = (
            await session.exec(
                select(Note).where(Note.workshop_id == new_id, Note.facilitator_id == other.id)
            )
        ).all()
    assert [e.type for e in events] == ["workshop.imported"]
    assert len(facilitator_notes) == 2


def _broken(document: dict[str, Any]) -> list[tuple[str, dict[str, Any], str]]:
    """(case, document, expected words in a problem) for one bad document each."""
    cases: list[tuple[str, dict[str, Any], str]] = []

    def case(name: str, expected: str, change: Any) -> None:
        doc = copy.deepcopy(document)
        change(doc)
        cases.append((name, doc, expected))

    case("version", "schema_version", lambda d: d.update(schema_version=99))
    case("extra field", "Extra inputs", lambda d: d["workshop"].update(colour="red"))
    case("naive time", "timezone", lambda d: d["workshop"].update(created_at="2025-03-04T14:00:00"))
    case(
        "card of other function",
        "is not a card of",
        lambda d: d["card_votes"][0].update(function_id="service-design"),
    )
    case(
        "unknown participant",
        "no participant 'p99'",
        lambda d: d["level_votes"][0].update(participant="p99"),
    )
    case(
        "level off scale", "not on the 3-level scale", lambda d: d["level_votes"][0].update(level=5)
    )
    case("duplicate vote", "appears 2 times", lambda d: d["card_votes"].append(d["card_votes"][0]))
    case("unknown area", "no area 'later'", lambda d: d["notes"][0].update(area="later"))
    case("bad group", "is not a group", lambda d: d["notes"][0].update(group="g1"))
    case("gap in ids", "ids must be n1", lambda d: d["notes"][0].update(id="n40"))
    case(
        "control character", "control characters", lambda d: d["notes"][0].update(text="bell\u0007")
    )
    case("too long", "at most 500", lambda d: d["notes"][0].update(text="x" * 501))
    case("broken definition", "definition: scale", lambda d: d["definition"].update(scale=[]))
    case(
        "dot phase",
        "not a prioritise phase",
        lambda d: d["notes"][5]["dots"][0].update(phase_key="lobby"),
    )
    case(
        "same name twice",
        "display name",
        lambda d: d["participants"][1].update(display_name="ana díaz"),
    )
    return cases


async def test_bad_documents_are_refused_and_write_nothing(
    client: httpx.AsyncClient, facilitator: FacilitatorLogin, seed: Seed, settings: Settings
) -> None:
    workshop_id = await seed()
    document = (await export(client, facilitator, workshop_id, format="json")).json()
    before = await _counts(settings)
    for name, doc, expected in _broken(document):
        response = await _import(client, facilitator, doc)
        assert response.status_code == 422, name
        body = response.json()
        assert body["code"] == "invalid_export", name
        assert any(expected in p for p in body["problems"]), (name, body["problems"])
        assert body["detail"].startswith("the document is not a valid workshop export"), name
    for raw in (b"{not json", b"[]", b"null", b'{"schema_version": 1}'):
        response = await _import(client, facilitator, raw)
        assert response.status_code == 422, raw
    wrong_type = await client.post(
        "/api/workshops/import",
        content=json.dumps(document),
        headers={**facilitator.headers, "Content-Type": "text/plain"},
    )
    assert wrong_type.status_code == 422
    assert "Content-Type: application/json" in wrong_type.json()["problems"][0]
    assert await _counts(settings) == before


async def test_import_needs_a_facilitator(client: httpx.AsyncClient, settings: Settings) -> None:
    response = await client.post(
        "/api/workshops/import",
        json={"schema_version": 1},
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 401
    assert "sign in" in response.json()["detail"]


@pytest.mark.parametrize("definition_file", ["dhs-cx-maturity.yaml", "govcx-four-level.yaml"])
async def test_round_trip_with_the_shipped_definitions(
    client: httpx.AsyncClient, facilitator: FacilitatorLogin, seed: Seed, definition_file: str
) -> None:
    definition = load_definition(PROJECT_DEFINITIONS / definition_file)
    workshop_id = await seed(definition=definition, extra_how=HOSTILE, anonymous=True)
    first = await export(client, facilitator, workshop_id, format="json")
    imported = await _import(client, facilitator, first.content)
    assert imported.status_code == 201, imported.text
    second = await export(client, facilitator, imported.json()["id"], format="json")
    assert second.content == first.content
