"""A workshop run through the live engine (WebSocket), then exported and imported.

The other export tests write rows directly for predictable golden files; this one proves
that what the live engine really stores comes out, and round-trips, unchanged.
"""

from __future__ import annotations

import io
import json
import zipfile

from tests.realtime.conftest import Server, new_workshop

# The live-server fixture, shared with the realtime tests.
from tests.realtime.conftest import server as server


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
