"""PostgreSQL ends the app's connections and their close arrives late.

When PostgreSQL ends a connection (`pg_terminate_backend`, a restart, a failover), it
sends a last error message and then closes the socket. Between the two, asyncpg has
read the message, which it did not ask for, and refuses to start anything on that
connection ("cannot switch to state ..."), while the connection does not yet count as
closed. Here a TCP proxy between the app and PostgreSQL holds that window open: it
passes on everything the server sends and holds back the close, so every one of the
app's connections is in it at once. The next commands (the lane's kind and the usual
path's) must still succeed on new connections, nothing half-written.

The lane sends such a command the usual way (`pg_lane.ended_by_server`). The usual
path's pool needs nothing of its own: asyncpg closes a connection on that refusal, so
the pool's check at checkout sees a disconnect and opens a new connection.

An earlier window: the last message itself has not arrived when the lane sends a
call. The proxy holds back everything the server sends (`mute_open`) until the call
has gone; the server's answer to it is that message. Such a call was not committed,
and goes the usual way (`pg_lane.shut_down_unanswered`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import make_url

from app.services.live.pg_lane import SIZE, PgLane
from tests.conftest import make_settings
from tests.faults.conftest import Stream, serve_in_loop, wait_until
from tests.faults.test_pg_drop import REFLECT, _state, room_in_reflect, terminate_app_backends
from tests.realtime.conftest import Server, Workshop

pytestmark = pytest.mark.postgres


class LateCloseProxy:
    """Forwards TCP both ways to PostgreSQL. While `hold` is set, a connection the
    server closes is not closed towards the client (until `release`): what the server
    sent before closing still arrives.

    `mute_open` holds back everything the server sends on the connections open then,
    its last message as well as its close, until `unmute` (new connections flow)."""

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.hold = False
        self.ended = 0  # connections the server closed
        self.sent_while_muted = 0  # bytes clients sent on muted connections
        self._held: list[asyncio.StreamWriter] = []
        self._open: set[asyncio.StreamWriter] = set()  # towards clients
        self._muted: dict[asyncio.StreamWriter, list[bytes]] = {}
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        self._open.add(writer)
        await asyncio.gather(
            self._pipe(reader, up_writer, from_server=False, client=writer),
            self._pipe(up_reader, writer, from_server=True, client=writer),
        )

    async def _pipe(
        self,
        src: asyncio.StreamReader,
        dst: asyncio.StreamWriter,
        from_server: bool,
        client: asyncio.StreamWriter,
    ) -> None:
        try:
            while data := await src.read(65536):
                if client in self._muted:
                    if from_server:
                        self._muted[client].append(data)
                        continue
                    self.sent_while_muted += len(data)
                dst.write(data)
                await dst.drain()
        except OSError:
            pass
        if from_server:
            self.ended += 1
            self._open.discard(dst)
            if self.hold or dst in self._muted:
                self._held.append(dst)
                return
        dst.close()

    def mute_open(self) -> None:
        self._muted = {writer: [] for writer in self._open}

    def unmute(self) -> None:
        """What the muted connections' server sent arrives, then their held closes."""
        for writer, sent in self._muted.items():
            for data in sent:
                writer.write(data)
        self._muted = {}
        if not self.hold:
            self.release()

    def release(self) -> None:
        self.hold = False
        for writer in self._held:
            writer.close()
        self._held.clear()

    async def close(self) -> None:
        self._muted = {}
        self.release()
        if self._server is not None:
            self._server.close()


@pytest.fixture
async def proxied(pg_url: str) -> AsyncIterator[tuple[Server, LateCloseProxy]]:
    url = make_url(pg_url)
    proxy = LateCloseProxy(url.host or "127.0.0.1", url.port or 5432)
    port = await proxy.start()
    through = url.set(host="127.0.0.1", port=port).render_as_string(hide_password=False)
    try:
        async with serve_in_loop(make_settings(through)) as server:
            yield server, proxy
    finally:
        await proxy.close()


async def room_with_a_note(
    server: Server, email: str
) -> tuple[PgLane, Workshop, Stream, Stream, dict[str, Any]]:
    """A room in its reflect phase and Ann's first note, written on the lane (so the
    lane's connections are open)."""
    lane = server.pg_lane
    workshop, fac, ann = await room_in_reflect(server, email)
    before = await ann.do("note.create", area="now", text="Before")
    assert lane.calls == 1
    return lane, workshop, fac, ann, before


async def test_commands_go_on_when_the_servers_close_arrives_after_its_last_message(
    proxied: tuple[Server, LateCloseProxy], pg_url: str
) -> None:
    server, proxy = proxied
    lane, workshop, fac, ann, before = await room_with_a_note(server, "lateclose@agency.gov")

    proxy.hold = True
    ended = proxy.ended
    cut = await terminate_app_backends(pg_url)  # direct, not through the proxy
    assert cut >= 4  # the pool's and the lane's (3)
    await wait_until(lambda: proxy.ended - ended >= cut, 10, "the server's last messages")
    await asyncio.sleep(0.1)  # the app reads them; the closes stay held

    # A lane kind: its connection refuses to start; it goes the usual way, whose pool
    # finds its own connection in the same state and opens a new one.
    note = await ann.do("note.create", area="now", text="In the window")
    assert note["seq"] == before["seq"] + 1
    # The facilitator's: its read on the lane finds another connection in the window,
    # so it goes the usual way too, on another pooled connection.
    step = await fac.do("phase.goto", index=REFLECT + 1)
    assert step["seq"] == note["seq"] + 1
    await fac.do("phase.goto", index=REFLECT)

    # Each of the lane's connections in the window sends one command the usual way;
    # then the lane opens new ones (so its calls go on).
    calls = lane.calls
    later = [await ann.do("note.create", area="now", text=f"Later {i}") for i in range(SIZE + 1)]
    assert lane.calls > calls
    assert [r["seq"] for r in later] == list(range(step["seq"] + 2, step["seq"] + SIZE + 3))

    proxy.release()
    seq, seqs, notes, _people = await _state(pg_url, workshop.id)
    assert seq == later[-1]["seq"] and seqs == list(range(1, seq + 1))
    assert sorted(notes) == ["Before", "In the window"] + [f"Later {i}" for i in range(SIZE + 1)]
    await wait_until(lambda: any(m["seq"] == seq for m in ann.stored()), 10, "the phase event")
    fac.assert_in_order()
    ann.assert_in_order()
    await ann.close()
    await fac.close()


async def test_a_call_sent_before_the_servers_last_message_goes_the_usual_way(
    proxied: tuple[Server, LateCloseProxy], pg_url: str
) -> None:
    """The lane sends a call on a connection the server is ending, before its last
    message has arrived: the server answers with that message (an administrator's
    shutdown) and closes. That call was not committed: it goes the usual way, and the
    sender gets an ack, not `try_again` (`pg_lane.shut_down_unanswered`)."""
    server, proxy = proxied
    lane, workshop, fac, ann, before = await room_with_a_note(server, "unanswered@agency.gov")

    proxy.mute_open()
    ended = proxy.ended
    cut = await terminate_app_backends(pg_url)  # direct, not through the proxy
    assert cut >= 4  # the pool's and the lane's (3)
    await wait_until(lambda: proxy.ended - ended >= cut, 10, "the server's last messages")

    cid = await ann.send("note.create", area="now", text="Sent to a server process gone")
    await wait_until(lambda: proxy.sent_while_muted > 0, 10, "the lane's call")
    proxy.unmute()
    reply = await ann.wait(lambda m: m.get("cid") == cid and m["type"] in ("ack", "error"))
    assert reply["type"] == "ack", reply
    assert reply["seq"] == before["seq"] + 1
    assert lane.calls == 1  # the usual path wrote it

    # The lane opens new connections; the facilitator's commands go on as well.
    after = await ann.do("note.create", area="now", text="After")
    assert after["seq"] == reply["seq"] + 1 and lane.calls == 2
    step = await fac.do("phase.goto", index=REFLECT + 1)
    assert step["seq"] == after["seq"] + 1

    seq, seqs, notes, _people = await _state(pg_url, workshop.id)
    assert seq == step["seq"] and seqs == list(range(1, seq + 1))
    assert sorted(notes) == ["After", "Before", "Sent to a server process gone"]
    await wait_until(lambda: any(m["seq"] == seq for m in ann.stored()), 10, "the phase event")
    fac.assert_in_order()
    ann.assert_in_order()
    await ann.close()
    await fac.close()
