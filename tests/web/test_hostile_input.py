"""Hostile input over HTTP, and the controls around it: each test names its threat.

* Script-bearing names and organisations are stored as typed and shown inert on every
  page that shows them (participant room, console, projector, join form).
* Oversized or control-character input is refused and writes nothing.
* Every template, whatever its extension (SVG included), is autoescaped, and none
  opts out.
* Tokens never reach the logs: not in WebSocket URLs, not in personal rejoin links,
  not from a refused handshake (a real Uvicorn with its access log on).
* Passwords are stored as argon2id hashes.
* Participant cookies are HttpOnly, SameSite=Lax, and Secure behind HTTPS.
"""

from __future__ import annotations

import asyncio
import logging
import re

import httpx
import pytest
import uvicorn
import websockets
from sqlmodel import func, select
from websockets.exceptions import InvalidStatus

from app.config import Settings
from app.db.engine import make_engine, make_sessionmaker
from app.db.models import Facilitator, Participant
from app.main import create_app
from app.services.security import SESSION
from app.web.templating import TEMPLATES_DIR, make_environment
from tests.conftest import FacilitatorLogin, make_settings
from tests.faults.conftest import wait_until

SCRIPT = "<script>alert(1)</script>"
IMG = '<img src=x onerror="alert(2)">'
CSRF = "csrf-for-hostile-tests-0123456789"


def _form_headers() -> dict[str, str]:
    return {"Cookie": f"cxw_csrf={CSRF}"}


async def _workshop(client: httpx.AsyncClient, fac: FacilitatorLogin) -> dict:
    created = await client.post(
        "/api/workshops",
        json={"definition": "dhs-cx-maturity", "title": "Hostile"},
        headers=fac.headers,
    )
    assert created.status_code == 201
    return created.json()


async def _participants(settings: Settings) -> int:
    engine = make_engine(settings.database_url)
    async with make_sessionmaker(engine)() as session:
        n = (await session.exec(select(func.count()).select_from(Participant))).one()
    await engine.dispose()
    return int(n)


async def test_script_bearing_names_are_stored_as_typed_and_shown_inert(
    client: httpx.AsyncClient, facilitator: FacilitatorLogin, settings: Settings
) -> None:
    workshop = await _workshop(client, facilitator)
    joined = await client.post(
        "/join",
        data={
            "code": workshop["join_code"],
            "display_name": SCRIPT,
            "organisation": IMG,
            "csrf_token": CSRF,
        },
        headers=_form_headers(),
        follow_redirects=False,
    )
    assert joined.status_code == 303
    cookie = joined.headers["set-cookie"].split(";")[0]
    wid = workshop["id"]
    pages = [
        await client.get(f"/w/{wid}", headers={"Cookie": cookie}),
        await client.get(f"/w/{wid}/outline", headers={"Cookie": cookie}),
        await client.get(f"/console/{wid}", headers=facilitator.headers),
        await client.get(f"/console/{wid}/outline", headers=facilitator.headers),
        await client.get(f"/projector/{wid}", headers=facilitator.headers),
    ]
    for page in pages:
        assert page.status_code == 200
        assert SCRIPT not in page.text and "<img src=x" not in page.text
    console = pages[2].text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in console
    assert "&lt;img src=x onerror=&#34;alert(2)&#34;&gt;" in console
    # Stored as typed: the text is data, made safe where it is shown.
    engine = make_engine(settings.database_url)
    async with make_sessionmaker(engine)() as session:
        stored = (await session.exec(select(Participant))).one()
    await engine.dispose()
    assert (stored.display_name, stored.organisation) == (SCRIPT, IMG)
    # The join form echoes what was typed, inert, when it refuses it.
    refused = await client.post(
        "/join",
        data={"code": workshop["join_code"], "display_name": SCRIPT, "csrf_token": CSRF},
        headers=_form_headers(),
    )
    assert refused.status_code == 409  # the name is taken
    assert SCRIPT not in refused.text and "&lt;script&gt;" in refused.text


@pytest.mark.parametrize(
    ("name", "organisation"),
    [
        ("x" * 5000, ""),  # over the form's limit
        ("y" * 61, ""),  # over the name's limit
        ("Sam\x00", ""),  # a control character
        ("Sam \u202eevil", ""),  # a bidirectional override (format character)
        ("   ", ""),  # nothing after trimming
        ("Sam", "Org\x07"),
        ("Sam", "o" * 121),
    ],
)
async def test_oversized_and_control_character_input_is_refused(
    client: httpx.AsyncClient,
    facilitator: FacilitatorLogin,
    settings: Settings,
    name: str,
    organisation: str,
) -> None:
    workshop = await _workshop(client, facilitator)
    form = await client.post(
        "/join",
        data={
            "code": workshop["join_code"],
            "display_name": name,
            "organisation": organisation,
            "csrf_token": CSRF,
        },
        headers=_form_headers(),
    )
    assert form.status_code == 422, form.text[:300]
    api = await client.post(
        f"/api/workshops/{workshop['id']}/participants",
        json={
            "join_code": workshop["join_code"],
            "display_name": name,
            "organisation": organisation,
        },
    )
    assert api.status_code == 422, api.text[:300]
    assert await _participants(settings) == 0


def test_every_template_is_autoescaped() -> None:
    env = make_environment()
    templates = sorted(p for p in TEMPLATES_DIR.rglob("*") if p.is_file())
    assert any(p.suffix == ".svg" for p in templates)
    for path in templates:
        name = path.relative_to(TEMPLATES_DIR).as_posix()
        # Autoescaping on for every name, not only .html (Starlette's default).
        autoescape = env.autoescape
        assert autoescape(name) if callable(autoescape) else autoescape is True, name
        source = path.read_text()
        assert not re.search(r"\|\s*safe\b|autoescape\s+false", source), name
    rendered = env.from_string("<text>{{ label }}</text>").render(label=SCRIPT)
    assert rendered == "<text>&lt;script&gt;alert(1)&lt;/script&gt;</text>"


async def test_tokens_never_reach_the_logs(
    settings: Settings, caplog: pytest.LogCaptureFixture, facilitator: FacilitatorLogin
) -> None:
    app = create_app(settings)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_config=None, log_level="info", access_log=True
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    await wait_until(lambda: server.started, 10, "uvicorn")
    port = server.servers[0].sockets[0].getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    secrets: list[str] = []
    with caplog.at_level(logging.INFO):
        async with httpx.AsyncClient(base_url=base) as http:
            token = (
                await http.post(
                    "/api/auth/token",
                    json={"email": facilitator.email, "password": facilitator.password},
                )
            ).json()["access_token"]
            created = await http.post(
                "/api/workshops",
                json={"definition": "dhs-cx-maturity", "title": "Logs"},
                headers={"Authorization": f"Bearer {token}"},
            )
            workshop = created.json()
            joined = await http.post(
                f"/api/workshops/{workshop['id']}/participants",
                json={"join_code": workshop["join_code"], "display_name": "Ann"},
            )
            participant = joined.json()["token"]
            secrets += [token, participant, facilitator.password]
            await http.get(f"/w/{workshop['id']}/rejoin", params={"t": participant})
            ws_url = f"ws://127.0.0.1:{port}/ws/workshops/{workshop['id']}"
            async with websockets.connect(f"{ws_url}?token={participant}&last_seq=0") as ws:
                await ws.recv()
            forged = participant[:-4] + "AAAA"
            secrets.append(forged)
            with pytest.raises(InvalidStatus):
                async with websockets.connect(f"{ws_url}?token={forged}"):
                    pass
        server.should_exit = True
        await asyncio.wait_for(task, 10)
    # The server's lines (the test's own httpx client logs its requests as they are).
    lines = [
        record.getMessage()
        for record in caplog.records
        if record.name.split(".")[0] in ("uvicorn", "app", "sqlalchemy")
    ]
    assert any("rejoin?t=[redacted]" in line for line in lines), lines
    assert any("token=[redacted]" in line for line in lines), lines
    for line in lines:
        for secret in secrets:
            assert secret not in line, line


async def test_passwords_are_argon2id(facilitator: FacilitatorLogin, settings: Settings) -> None:
    engine = make_engine(settings.database_url)
    async with make_sessionmaker(engine)() as session:
        stored = (await session.exec(select(Facilitator))).one()
    await engine.dispose()
    assert stored.password_hash.startswith("$argon2id$")
    assert facilitator.password not in stored.password_hash


@pytest.mark.parametrize("public_url", ["http://testserver", "https://cx.agency.gov"])
async def test_participant_cookie_flags(db_url: str, public_url: str) -> None:
    app = create_app(make_settings(db_url, public_url=public_url))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            from tests.conftest import make_facilitator

            fac = await make_facilitator(c, app.state.settings)
            workshop = await _workshop(c, fac)
            joined = await c.post(
                "/join",
                data={"code": workshop["join_code"], "display_name": "Ann", "csrf_token": CSRF},
                headers=_form_headers(),
                follow_redirects=False,
            )
    assert joined.status_code == 303
    cookie = joined.headers["set-cookie"]
    assert cookie.startswith(f"cxw_p_{workshop['id']}=")
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert ("Secure" in cookie) is public_url.startswith("https://")


async def test_json_api_takes_no_simple_cross_site_bodies(
    client: httpx.AsyncClient, facilitator: FacilitatorLogin, settings: Settings
) -> None:
    """A page elsewhere can post text/plain or a form without a CORS preflight; the API
    reads bodies as JSON only (which needs one), so the session cookie alone, were a
    browser to send it cross-site despite SameSite=Lax, changes nothing."""
    engine = make_engine(settings.database_url)
    async with make_sessionmaker(engine)() as session:
        facilitator_id = (await session.exec(select(Facilitator))).one().id
    await engine.dispose()
    app = client.app  # type: ignore[attr-defined]
    cookie = app.state.codec.dumps(SESSION, {"f": facilitator_id})
    body = b'{"definition": "dhs-cx-maturity", "title": "Forged"}'
    for content_type in (
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ):
        forged = await client.post(
            "/api/workshops",
            content=body,
            headers={"content-type": content_type, "Cookie": f"cxw_session={cookie}"},
        )
        assert forged.status_code == 422, content_type
    listed = await client.get("/api/workshops", headers=facilitator.headers)
    assert listed.json() == []
