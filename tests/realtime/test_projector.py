"""The projector view only shows: a socket opened with view=projector changes nothing."""

from __future__ import annotations

import pytest
import websockets

from app.services.identity import projector_token
from app.services.security import TokenCodec
from tests.conftest import TEST_SECRET
from tests.realtime.conftest import Workshop, new_workshop


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


async def test_projector_link_opens_only_the_read_only_view_of_its_workshop(
    workshop: Workshop,
) -> None:
    codec = TokenCodec(TEST_SECRET)
    link = projector_token(codec, workshop.id)
    screen = await workshop.connect(link, "screen")  # no view=projector needed
    hello = screen.received[0]
    assert (hello["audience"], hello["participant_id"]) == ("projector", None)
    assert (await screen.refused("workshop.start"))["code"] == "read_only"
    assert (await screen.refused("note.create", area="now", text="x"))["code"] == "read_only"
    # Asking for the facilitator's view changes nothing: it stays the projector.
    again = await workshop.connect(link, "screen2", view="facilitator")
    assert again.received[0]["audience"] == "projector"

    other = await new_workshop(workshop.server, email="other@agency.gov")
    elsewhere = projector_token(codec, other.id)
    base = f"{workshop.server.ws_base}/ws/workshops/{workshop.id}?token="
    for refused_token in (elsewhere, link + "x"):  # another workshop's link; a forged one
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(base + refused_token)
        assert refused.value.response.status_code == 403
