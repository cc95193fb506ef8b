"""One address cannot hold more than its share of sockets; closing frees a place."""

from __future__ import annotations

import asyncio

import pytest
from websockets.exceptions import InvalidStatus

from app.realtime import socket as socket_module
from tests.realtime.conftest import Workshop


async def test_connections_per_address_are_capped(
    workshop: Workshop, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(socket_module, "MAX_CONNECTIONS_PER_ADDRESS", 2)
    first = await workshop.facilitator()
    _pid, second = await workshop.participant("Ann")
    with pytest.raises(InvalidStatus) as refused:
        await workshop.participant("Bo")
    assert refused.value.response.status_code == 403
    await second.close()
    rooms = workshop.server.app.state.rooms
    for _ in range(100):
        if sum(rooms.per_address.values()) == 1:
            break
        await asyncio.sleep(0.02)
    _pid, third = await workshop.participant("Cy")
    assert (await third.until("snapshot"))["type"] == "snapshot"
    await first.close()
    await third.close()
