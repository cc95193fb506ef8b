"""Guessing passwords or join codes is limited per address; right answers still work."""

from __future__ import annotations

import httpx

from app.web.ratelimit import JOIN_LIMIT, SIGN_IN_LIMIT
from tests.conftest import FacilitatorLogin


async def test_sign_in_attempts_are_limited(
    client: httpx.AsyncClient, facilitator: FacilitatorLogin
) -> None:
    for _ in range(SIGN_IN_LIMIT[0]):
        bad = await client.post(
            "/api/auth/token", json={"email": facilitator.email, "password": "wrong guess!"}
        )
        assert bad.status_code == 401
    blocked = await client.post(
        "/api/auth/token", json={"email": facilitator.email, "password": facilitator.password}
    )
    assert blocked.status_code == 429
    assert "too many failed sign-ins" in blocked.json()["detail"]
    assert int(blocked.headers["retry-after"]) > 0


async def test_join_code_guessing_is_limited(
    client: httpx.AsyncClient, facilitator: FacilitatorLogin
) -> None:
    created = await client.post(
        "/api/workshops",
        json={"definition": "dhs-cx-maturity", "title": "Rate limits"},
        headers=facilitator.headers,
    )
    workshop = created.json()
    url = f"/api/workshops/{workshop['id']}/participants"
    ok = await client.post(url, json={"join_code": workshop["join_code"], "display_name": "A"})
    assert ok.status_code == 201  # right codes never count against the limit
    for i in range(JOIN_LIMIT[0]):
        wrong = await client.post(url, json={"join_code": f"WRONG{i}", "display_name": "X"})
        assert wrong.status_code == 403
    blocked = await client.post(url, json={"join_code": workshop["join_code"], "display_name": "B"})
    assert blocked.status_code == 429
    page = await client.get("/join/ABCDEF")
    assert page.status_code == 429
    assert "Too many attempts" in page.text
