import websockets, pytest, json, asyncio
from tests.realtime.conftest import Workshop

async def test_probe(workshop: Workshop) -> None:
    s = workshop.server
    url = f"{s.ws_base}/ws/workshops/{workshop.id}"
    for extra in ["", "?token=abc"]:
        try:
            await websockets.connect(url + extra)
        except Exception as exc:
            print(type(exc), exc, getattr(exc, "response", None) and exc.response.status_code, getattr(exc, "response", None) and exc.response.body)
    print(s.settings.allowed_origins)
    try:
        await websockets.connect(url + "?token=" + workshop.facilitator_token, origin="http://evil.example")
    except Exception as exc:
        print(type(exc), exc)
    fac = await workshop.facilitator()
    await fac.send_raw("[" * 5000 + "]" * 5000)
    print(await fac.quiet(0.5))
    print(fac.ws.close_code, fac.ws.close_reason)
    fac = await workshop.facilitator()
    await fac.send_raw('{"type":"ping","cid":"\\ud800"}')
    await fac.send("ping")
    print(await fac.quiet(0.5))
    fac = await workshop.facilitator()
    await fac.send("sync", last_seq=10**20)
    await fac.send("ping")
    print(await fac.quiet(0.5))
    assert 0
