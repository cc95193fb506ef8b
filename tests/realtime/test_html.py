"""Browser clients get HTML fragments from the same events, escaped, per audience."""

from __future__ import annotations

import asyncio
import json

import httpx
import websockets

from tests.realtime.conftest import Workshop


async def _html_socket(workshop: Workshop, token: str, **query: str) -> websockets.ClientConnection:
    params = {"token": token, "format": "html", **query}
    url = f"{workshop.server.ws_base}/ws/workshops/{workshop.id}?{httpx.QueryParams(params)}"
    return await websockets.connect(url)


async def _until(ws: websockets.ClientConnection, needle: str) -> str:
    async with asyncio.timeout(5):
        while True:
            text = str(await ws.recv())
            if needle in text:
                return text


async def test_note_arrives_as_escaped_fragment_and_form_commands_work(
    workshop: Workshop,
) -> None:
    fac = await workshop.facilitator()
    await fac.do("workshop.start")
    shown = (await fac.do("phase.goto", index=4))["seq"]  # measurement.reflect
    pid, token = await workshop.join("Ann")
    # As the pages do: from the seq they showed, so that the note's fragment comes
    # whether the note is written before or after a socket is set up.
    page = await _html_socket(workshop, token, last_seq=str(shown))
    projector = await _html_socket(
        workshop, workshop.facilitator_token, view="projector", last_seq=str(shown)
    )
    # htmx's ws extension sends form fields as strings, with a HEADERS object.
    await page.send(
        json.dumps(
            {
                "type": "note.create",
                "area": "now",
                "text": "<script>alert('x')</script> & more",
                "x": "0.25",
                "y": "0.5",
                "HEADERS": {"HX-Request": "true"},
            }
        )
    )
    for ws in (page, projector):
        fragment = await _until(ws, "note-text")
        assert 'hx-swap-oob="beforeend"' in fragment
        assert 'id="area-notes-measurement-now"' in fragment
        assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; more" in fragment
        assert "<script>" not in fragment
        assert 'data-x="0.25"' in fragment
        assert 'id="live-seq"' in fragment
    await page.send(json.dumps({"type": "dot.add", "note_id": "nope"}))
    error = await _until(page, "prioritise phase")
    assert 'role="alert"' in error and "possible only in the prioritise phase" in error
    await page.close()
    await projector.close()
    await fac.close()
    assert pid


async def test_html_client_resumes_from_the_seq_its_page_showed(workshop: Workshop) -> None:
    fac = await workshop.facilitator()
    await fac.do("workshop.start")
    shown = (await fac.do("phase.goto", index=4))["seq"]
    await fac.do("note.create", area="hope", text="One front door")
    _pid, token = await workshop.join("Bo")
    page = await _html_socket(workshop, token, last_seq=str(shown))
    fragment = await _until(page, "One front door")
    assert "area-notes-measurement-hope" in fragment
    await page.close()
    await fac.close()


async def test_a_joiner_can_be_removed_from_the_console_at_once(workshop: Workshop) -> None:
    """The facilitator's fragment for a new participant carries the remove control."""
    console = await _html_socket(workshop, workshop.facilitator_token)
    first_pid, first_token = await workshop.join("Ann")
    first = await _html_socket(workshop, first_token)
    pid, _token = await workshop.join("Bo <b>")
    for_facilitator = await _until(console, f'id="participant-{pid}"')
    assert "Yes, remove Bo &lt;b&gt;" in for_facilitator
    assert '"participant.remove"' in for_facilitator and pid in for_facilitator
    for_participant = await _until(first, f'id="participant-{pid}"')
    assert "participant.remove" not in for_participant and "Bo &lt;b&gt;" in for_participant
    for ws in (console, first):
        await ws.close()
    assert first_pid
