"""A workshop run through the live engine (WebSocket), then exported and imported.

The other export tests write rows directly for predictable golden files; this one proves
that what the live engine really stores comes out, and round-trips, unchanged.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import jsonschema

from tests.realtime.conftest import Server, Workshop, new_workshop

# The live-server fixture, shared with the realtime tests.
from tests.realtime.conftest import server as server

SCHEMA_FILE = Path(__file__).parents[2] / "docs" / "export.schema.json"


async def test_live_workshop_exports_and_round_trips(server: Server) -> None:
    workshop = await new_workshop(server)
    headers = {"Authorization": f"Bearer {workshop.facilitator_token}"}
    fac = await workshop.facilitator()
    people = [await workshop.participant(name) for name in ("Ana", "Sam", "Kofi")]
    await fac.do("workshop.start")  # -> Measurement: sort
    cards = ["measurement-feedback-channel", "measurement-core-questions"]
    for _pid, client in people:
        for card in cards:
            await client.do("card.vote", card_id=card, choice="do")
    await fac.do("phase.next")  # discuss
    await fac.do("votes.reveal")
    await fac.do("card.settle", card_id=cards[0], practised=True, note="Seen in every office")
    await fac.do("phase.next")  # level vote
    for (_pid, client), level in zip(people, (0, 1, 1), strict=True):
        await client.do("level.vote", level=level)
    await fac.do("votes.reveal")
    await fac.do("level.record", function_id="measurement", level=1, note="Agreed <b>fast</b>")
    await fac.do("phase.next")  # reflect
    ana = people[0][1]
    first = (await ana.do("note.create", area="how", text="=Name an owner"))["result"]["note_id"]
    await people[1][1].do("note.create", area="now", text="Yearly survey")
    await fac.do("note.create", area="how", text="Dashboard")
    await ana.do("group.create", area="how", label="Ownership", note_ids=[first])
    await fac.do("phase.next")  # prioritise
    await ana.do("dot.add", note_id=first)
    await people[2][1].do("dot.add", note_id=first)
    await fac.do("workshop.end")
    for _pid, client in people:
        await client.close()
    await fac.close()

    url = f"/api/workshops/{workshop.id}/export"
    exported = await server.http.get(url, params={"format": "json"}, headers=headers)
    assert exported.status_code == 200, exported.text
    document = exported.json()
    assert document["workshop"]["state"] == "ended"
    assert len(document["participants"]) == 3 and len(document["card_votes"]) == 6
    assert [v["level"] for v in document["level_votes"]] == [0, 1, 1]
    notes = {n["text"]: n for n in document["notes"]}
    assert notes["=Name an owner"]["group"] == "g1" and len(notes["=Name an owner"]["dots"]) == 2
    assert notes["Dashboard"]["author"] == "facilitator"
    measurement = document["scores"]["functions"][0]
    assert measurement["recorded_level_name"] == "Established"
    assert document["level_decisions"][0]["signals"]["voted"]["n_voters"] == 3

    report = await server.http.get(url, params={"format": "md"}, headers=headers)
    assert "**Recorded level: Established**" in report.text
    assert "Agreed \\<b\\>fast\\</b\\>" in report.text
    assert "- **Ownership** (2 dots)" in report.text
    tables = await server.http.get(url, params={"format": "csv"}, headers=headers)
    with zipfile.ZipFile(io.BytesIO(tables.content)) as archive:
        assert "'=Name an owner" in archive.read("notes.csv").decode("utf-8-sig")

    imported = await server.http.post(
        "/api/workshops/import",
        content=exported.content,
        headers={**headers, "Content-Type": "application/json"},
    )
    assert imported.status_code == 201, imported.text
    again = await server.http.get(
        f"/api/workshops/{imported.json()['id']}/export", params={"format": "json"}, headers=headers
    )
    assert json.loads(again.content) == document
    assert again.content == exported.content


async def test_workshop_covering_some_functions_exports_them_only(server: Server) -> None:
    """A session that covers two functions, in its own order, reports those two."""
    base = await new_workshop(server)
    headers = {"Authorization": f"Bearer {base.facilitator_token}"}
    created = await server.http.post(
        "/api/workshops",
        json={
            "definition": "dhs-cx-maturity",
            "title": "Two functions",
            "functions": ["customer-understanding", "measurement"],
        },
        headers=headers,
    )
    assert created.status_code == 201, created.text
    body = created.json()
    workshop = Workshop(server, body["id"], body["join_code"], base.facilitator_token)
    fac = await workshop.facilitator()
    _pid, ana = await workshop.participant("Ana")
    await fac.do("workshop.start")  # -> Customer Understanding: sort
    await fac.do("phase.goto", index=3)  # its level vote
    await ana.do("level.vote", level=2)
    await fac.do("votes.reveal")
    await fac.do("level.record", function_id="customer-understanding", level=2, note="Clear")
    refused = await fac.refused("level.record", function_id="governance-strategy", level=0)
    assert refused["code"] == "unknown_function", refused

    url = f"/api/workshops/{workshop.id}/export"
    document = (await server.http.get(url, params={"format": "json"}, headers=headers)).json()
    jsonschema.Draft202012Validator(json.loads(SCHEMA_FILE.read_text())).validate(document)
    functions = [f["function_id"] for f in document["scores"]["functions"]]
    assert functions == ["customer-understanding", "measurement"]
    assert document["scores"]["functions"][0]["recorded_level_name"] == "Exemplary"
    report = (await server.http.get(url, params={"format": "md"}, headers=headers)).text
    assert "Customer Understanding" in report and "Governance" not in report
    assert report.index("Customer Understanding") < report.index("Measurement")
    for fmt in ("csv", "pdf"):
        got = await server.http.get(url, params={"format": fmt}, headers=headers)
        assert got.status_code == 200, fmt
