"""Sign-in page, session cookie, CSRF and the dashboard."""

from __future__ import annotations

import asyncio
import html
import re

import httpx

from app.services.identity import participant_cookie
from tests.conftest import FacilitatorLogin


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "page has no CSRF field"
    return match.group(1)


async def test_landing_and_signin_pages_render(client: httpx.AsyncClient) -> None:
    landing = await client.get("/")
    assert landing.status_code == 200
    assert "Sign in as a facilitator" in landing.text
    page = await client.get("/signin")
    assert page.status_code == 200
    assert '<label for="email">' in page.text
    assert "cxw_csrf" in client.cookies
    assert (await client.get("/dashboard", follow_redirects=False)).headers["location"] == "/signin"


async def test_signin_needs_csrf_and_right_password(
    client: httpx.AsyncClient, facilitator: FacilitatorLogin
) -> None:
    page = await client.get("/signin")
    token = _csrf(page.text)
    no_token = await client.post(
        "/signin", data={"email": facilitator.email, "password": facilitator.password}
    )
    assert no_token.status_code == 403
    wrong = await client.post(
        "/signin", data={"email": facilitator.email, "password": "nope", "csrf_token": token}
    )
    assert wrong.status_code == 401
    assert "The email or password is wrong." in wrong.text
    assert "cxw_session" not in client.cookies
    ok = await client.post(
        "/signin",
        data={"email": facilitator.email, "password": facilitator.password, "csrf_token": token},
        follow_redirects=False,
    )
    assert ok.status_code == 303
    cookie = ok.headers["set-cookie"]
    assert "cxw_session=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie


async def test_dashboard_creates_workshop_with_escaped_title(
    client: httpx.AsyncClient, facilitator: FacilitatorLogin
) -> None:
    token = _csrf((await client.get("/signin")).text)
    await client.post(
        "/signin",
        data={"email": facilitator.email, "password": facilitator.password, "csrf_token": token},
    )
    dashboard = await client.get("/dashboard")
    assert dashboard.status_code == 200
    assert "No workshops yet" in dashboard.text
    title = "<script>alert(1)</script> Passports"
    created = await client.post(
        "/dashboard/workshops",
        data={"title": title, "definition": "dhs-cx-maturity", "csrf_token": _csrf(dashboard.text)},
        follow_redirects=True,
    )
    assert created.status_code == 200
    assert "&lt;script&gt;alert(1)&lt;/script&gt; Passports" in created.text
    assert "<script>alert(1)" not in created.text
    # The session cookie also authenticates the JSON API.
    listed = await client.get("/api/workshops")
    assert [w["title"] for w in listed.json()] == [title]
    bad = await client.post(
        "/dashboard/workshops",
        data={"title": "x", "definition": "nope", "csrf_token": _csrf(dashboard.text)},
    )
    assert bad.status_code == 422
    assert "Choose one of the listed definitions." in bad.text
    # The form lists each definition's core functions; unticked ones are left out.
    assert 'value="dhs-cx-maturity:governance-strategy" checked' in dashboard.text
    picked = await client.post(
        "/dashboard/workshops",
        data={
            "title": "Governance only",
            "definition": "dhs-cx-maturity",
            "functions": ["", "dhs-cx-maturity:governance-strategy", "govcx-four-level:x"],
            "csrf_token": _csrf(dashboard.text),
        },
    )
    assert picked.status_code == 303
    listed = await client.get("/api/workshops")
    assert listed.json()[0]["functions"] == ["governance-strategy"]
    none_ticked = await client.post(
        "/dashboard/workshops",
        data={
            "title": "Nothing",
            "definition": "dhs-cx-maturity",
            "functions": [""],
            "csrf_token": _csrf(dashboard.text),
        },
    )
    assert none_ticked.status_code == 422
    assert "choose at least one core function" in none_ticked.text
    assert len((await client.get("/api/workshops")).json()) == 2
    out = await client.post(
        "/signout", data={"csrf_token": _csrf(dashboard.text)}, follow_redirects=False
    )
    assert out.status_code == 303
    assert (await client.get("/api/workshops")).status_code == 401


async def test_dashboard_imports_a_json_export(
    client: httpx.AsyncClient, facilitator: FacilitatorLogin
) -> None:
    created = await client.post(
        "/api/workshops",
        json={"definition": "dhs-cx-maturity", "title": "Customs, last year"},
        headers=facilitator.headers,
    )
    wid = created.json()["id"]
    exported = await client.get(
        f"/api/workshops/{wid}/export", params={"format": "json"}, headers=facilitator.headers
    )
    assert exported.status_code == 200
    token = _csrf((await client.get("/signin")).text)
    await client.post(
        "/signin",
        data={"email": facilitator.email, "password": facilitator.password, "csrf_token": token},
    )
    dashboard = await client.get("/dashboard")
    assert 'action="/dashboard/import"' in dashboard.text and 'href="/compare"' in dashboard.text
    csrf = _csrf(dashboard.text)

    def upload(name: str, content: bytes) -> dict[str, tuple[str, bytes, str]]:
        return {"export": (name, content, "application/json")}

    ok = await client.post(
        "/dashboard/import",
        data={"csrf_token": csrf},
        files=upload("customs.json", exported.content),
        follow_redirects=True,
    )
    assert ok.status_code == 200
    listed = (await client.get("/api/workshops")).json()
    assert [w["title"] for w in listed] == ["Customs, last year", "Customs, last year"]
    assert len({w["id"] for w in listed}) == 2

    for content, says in (
        (b"not json", "the file is not a JSON export"),
        (b'{"schema_version": 1}', "Could not import it"),
    ):
        bad = await client.post(
            "/dashboard/import", data={"csrf_token": csrf}, files=upload("x.json", content)
        )
        assert bad.status_code == 422, bad.text
        assert says in bad.text
    no_csrf = await client.post("/dashboard/import", files=upload("c.json", exported.content))
    assert no_csrf.status_code == 403
    assert len((await client.get("/api/workshops")).json()) == 2  # nothing half-written


async def test_projector_link_shows_the_projector_view_without_signing_in(
    client: httpx.AsyncClient, facilitator: FacilitatorLogin
) -> None:
    created = await client.post(
        "/api/workshops",
        json={"definition": "dhs-cx-maturity", "title": "Room screen"},
        headers=facilitator.headers,
    )
    wid = created.json()["id"]
    console = await client.get(f"/console/{wid}", headers=facilitator.headers)
    assert console.status_code == 200
    match = re.search(r'class="share-link">([^<]+)</code>', console.text)
    assert match, "the console shows no projector link"
    link = html.unescape(match.group(1)).removeprefix("http://testserver")
    assert link.startswith(f"/projector/{wid}/open?k=")

    screen = httpx.AsyncClient(transport=client._transport, base_url="http://testserver")
    async with screen:
        assert (await screen.get(f"/projector/{wid}")).headers["location"] == "/signin"
        opened = await screen.get(link)
        assert opened.status_code == 303 and opened.headers["location"] == f"/projector/{wid}"
        assert "HttpOnly" in opened.headers["set-cookie"]
        page = await screen.get(f"/projector/{wid}")
        assert page.status_code == 200 and "Projector view" in page.text
        assert "share-link" not in page.text and "Facilitator controls" not in page.text
        assert (await screen.get(f"/projector/{wid}/stage")).status_code == 200
        # The screen's cookie opens nothing else: not the console, not the API.
        assert (await screen.get(f"/console/{wid}")).headers["location"] == "/signin"
        assert (await screen.get(f"/api/workshops/{wid}")).status_code == 401
        other = await client.post(
            "/api/workshops",
            json={"definition": "dhs-cx-maturity", "title": "Another room"},
            headers=facilitator.headers,
        )
        other_id = other.json()["id"]
        assert (await screen.get(f"/projector/{other_id}")).headers["location"] == "/signin"
        forged = await screen.get(f"/projector/{other_id}/open?k={link.split('k=')[1]}")
        assert forged.status_code == 404


async def test_a_room_loading_the_page_at_once_gets_it_with_the_pool_to_spare(
    client: httpx.AsyncClient, facilitator: FacilitatorLogin
) -> None:
    """Twenty people open the room page at once: more than the database pool has
    connections. A page must not hold one connection while it waits for another (20
    pages each holding one would wait for each other until the pool's timeout)."""
    created = await client.post(
        "/api/workshops",
        json={"definition": "dhs-cx-maturity", "title": "Busy room"},
        headers=facilitator.headers,
    )
    wid, code = created.json()["id"], created.json()["join_code"]
    tokens = []
    for i in range(20):
        joined = await client.post(
            f"/api/workshops/{wid}/participants", json={"join_code": code, "display_name": f"P{i}"}
        )
        assert joined.status_code == 201, joined.text
        tokens.append(joined.json()["token"])

    async def page(token: str) -> int:
        cookies = {participant_cookie(wid): token}
        async with httpx.AsyncClient(
            transport=client._transport, base_url="http://testserver", cookies=cookies
        ) as person:
            return (await person.get(f"/w/{wid}")).status_code

    # Well under the pool's 30 s timeout, which a deadlock would run into.
    statuses = await asyncio.wait_for(asyncio.gather(*(page(t) for t in tokens)), 20)
    assert statuses == [200] * 20
