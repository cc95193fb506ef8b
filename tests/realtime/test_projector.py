"""The projector view only shows: a socket opened with view=projector changes nothing."""

from __future__ import annotations

from tests.realtime.conftest import Workshop


async def test_projector_socket_is_read_only(workshop: Workshop) -> None:
    projector = await workshop.facilitator(view="projector")
    hello = projector.received[0]
    assert (hello["role"], hello["audience"]) == ("facilitator", "projector")
    for command, fields in (
        ("workshop.start", {}),
        ("note.create", {"area": "now", "text": "From the big screen"}),
        ("presence.set", {"status": "away"}),
    ):
        refused = await projector.refused(command, **fields)
        assert refused["code"] == "read_only"
    await projector.do("sync", last_seq=0)  # reading is allowed
    fac = await workshop.facilitator()
    started = await fac.do("workshop.start")
    assert started["seq"] == 2  # nothing the projector sent was stored
    await projector.until("workshop.started")
