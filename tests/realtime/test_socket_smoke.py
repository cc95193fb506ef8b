"""A first end-to-end pass over the socket: handshake, a command, both clients see it."""

from __future__ import annotations

from tests.realtime.conftest import Workshop


async def test_start_and_vote_seen_by_both(workshop: Workshop) -> None:
    fac = await workshop.facilitator()
    snap = await fac.next()
    assert snap["type"] == "snapshot" and snap["workshop"]["state"] == "lobby"
    pid, ann = await workshop.participant("Ann")
    assert (await ann.next())["type"] == "snapshot"
    ack = await fac.do("workshop.start")
    for client in (fac, ann):
        started = await client.until("workshop.started")
        assert started["seq"] == ack["seq"]
        assert started["phase"]["key"] == "measurement.sort"
    vote = await ann.do("card.vote", card_id="measurement-feedback-channel", choice="do")
    assert vote["result"] == {"card_id": "measurement-feedback-channel", "choice": "do"}
    for client in (fac, ann):
        voted = await client.until("card.voted")
        assert voted["participant_id"] == pid
        assert "choice" not in voted
    await fac.close()
    await ann.close()
