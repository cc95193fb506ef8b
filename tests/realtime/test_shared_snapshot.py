"""The shared snapshot (built once per room, seq and audience, `me` spliced in) is
exactly what `build_snapshot` gives each recipient, names hidden or not."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

from app.db.engine import begin_consistent_read
from app.db.models import Workshop as WorkshopRow
from app.realtime.messages import Audience
from app.services.live.snapshot import build_shared, build_snapshot, dumps
from tests.realtime.conftest import Client, Workshop

CARD = "measurement-feedback-channel"
CARD_2 = "measurement-core-questions"
AUDIENCES: tuple[Audience, ...] = ("participant", "projector", "facilitator")


async def _compare(workshop: Workshop, pids: list[str | None], presence: dict[str, str]) -> int:
    """Compare the spliced text with a fresh build for every audience and recipient."""
    app = workshop.server.app
    live = app.state.live
    now = datetime.now(UTC)
    compared = 0
    async with app.state.sessionmaker() as session:
        await begin_consistent_read(session)
        row = await session.get(WorkshopRow, workshop.id)
        assert row is not None
        definition, phases = live.cache.get(row)
        for audience in AUDIENCES:
            shared = await build_shared(session, row, definition, phases, audience)
            assert shared.seq == row.seq
            for pid in pids if audience == "participant" else [None]:
                fresh = await build_snapshot(
                    session, row, definition, phases, audience, pid, presence
                )
                text = shared.text(pid, presence, now)
                assert json.loads(text) == fresh
                assert text == dumps(fresh)  # same keys, same order
                compared += 1
    return compared


async def _snapshot(client: Client) -> dict[str, Any]:
    return await client.until("snapshot")


async def test_spliced_snapshot_equals_a_fresh_build(workshop: Workshop) -> None:
    fac = await workshop.facilitator()
    await _snapshot(fac)
    ann_id, ann = await workshop.participant("Ann")
    bob_id, bob = await workshop.participant("Bob")
    cat_id, _cat = await workshop.participant("Cat")
    dan_id, _token = await workshop.join("Dan")  # never connects, never votes
    await fac.do("anonymity.set", anonymous=False)
    await fac.do("workshop.start")
    await fac.do("timer.start")
    await fac.do("timer.pause")  # a paused timer: its remaining seconds are fixed
    await ann.do("card.vote", card_id=CARD, choice="do")
    await bob.do("card.vote", card_id=CARD, choice="dont")
    await bob.do("card.vote", card_id=CARD_2, choice="unsure")
    await fac.do("votes.reveal")
    await fac.do("phase.next")
    await fac.do("card.settle", card_id=CARD, practised=True, note="Agreed")
    await fac.do("phase.goto", index=3)
    await ann.do("level.vote", level=1)
    await bob.do("level.vote", level=2)
    await fac.do("votes.reveal")
    await fac.do("level_round.open")
    await ann.do("level.vote", level=2)
    await fac.do("phase.next")
    n1 = (await ann.do("note.create", area="how", text="Weekly review"))["result"]["note_id"]
    n2 = (await bob.do("note.create", area="how", text="Hire a researcher"))["result"]["note_id"]
    await ann.do("note.create", area="now", text='Quotes " and \\ and ünïcode')
    await fac.do("group.create", area="how", label="Do", note_ids=[n1])
    await fac.do("phase.next")
    await ann.do("dot.add", note_id=n1)
    await ann.do("dot.add", note_id=n2)
    await bob.do("dot.add", note_id=n1)

    pids: list[str | None] = [ann_id, bob_id, cat_id, dan_id, "not-a-participant"]
    presence = {ann_id: "online", bob_id: "away"}
    assert await _compare(workshop, pids, presence) == 5 + 2
    await fac.do("anonymity.set", anonymous=True)
    assert await _compare(workshop, pids, {}) == 5 + 2

    # Over the socket: several join at once at one seq; each gets its own `me`.
    rooms = workshop.server.app.state.rooms
    tokens = [await workshop.join(f"Late {i}") for i in range(4)]
    late = await asyncio.gather(
        *(workshop.connect(t, f"late{i}") for i, (_p, t) in enumerate(tokens))
    )
    snapshots = [await _snapshot(client) for client in late]
    assert {s["seq"] for s in snapshots} == {snapshots[0]["seq"]}
    assert [s["me"]["participant_id"] for s in snapshots] == [p for p, _t in tokens]
    assert all(p["display_name"] is None for s in snapshots for p in s["participants"])
    kept = rooms.rooms[workshop.id].snapshots["participant"]
    assert kept[0] == snapshots[0]["seq"]

    # What the socket sent is the fresh build for that participant (presence aside).
    app = workshop.server.app
    async with app.state.sessionmaker() as session:
        await begin_consistent_read(session)
        row = await session.get(WorkshopRow, workshop.id)
        assert row is not None
        definition, phases = app.state.live.cache.get(row)
        for (pid, _t), got in zip(tokens, snapshots, strict=True):
            expected = await build_snapshot(
                session, row, definition, phases, "participant", pid, {}
            )
            for part in (got, expected):
                for person in part["participants"]:
                    person["presence"] = None
            assert got == expected
