"""When fan-out loses messages (a Redis reconnect), connected clients catch up."""

from __future__ import annotations

from typing import Any

from app.realtime.hub import RESYNC
from tests.realtime.conftest import Workshop


async def test_lost_publications_are_recovered_on_resync(workshop: Workshop) -> None:
    fac = await workshop.facilitator()
    _pid, ann = await workshop.participant("Ann")
    await fac.do("workshop.start")
    await ann.until("workshop.started")
    hub = workshop.server.app.state.hub
    real_publish = hub.publish

    async def lost(workshop_id: str, message: dict[str, Any]) -> None:
        return None  # the message never reaches anyone, as while Redis is away

    hub.publish = lost
    try:
        ack = await fac.do("input.lock")
    finally:
        hub.publish = real_publish
    assert not [m for m in await ann.quiet(0.3) if m.get("type") == "input.locked"]
    hub.deliver_everywhere(RESYNC)
    for client in (ann, fac):
        locked = await client.until("input.locked")
        assert locked["seq"] == ack["seq"]
    # And live delivery carries on without repeats.
    await fac.do("input.unlock")
    await ann.until("input.unlocked")
    seqs = [e["seq"] for e in ann.events()]
    assert seqs == sorted(set(seqs))
