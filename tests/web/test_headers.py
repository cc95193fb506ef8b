"""Security headers on every response; HSTS only behind HTTPS."""

from __future__ import annotations

import httpx

from app.main import create_app
from tests.conftest import make_settings


async def _headers(public_url: str, db_url: str) -> httpx.Headers:
    app = create_app(make_settings(db_url, public_url=public_url))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            return (await c.get("/signin")).headers


async def test_headers_and_hsts_behind_https(db_url: str) -> None:
    plain = await _headers("http://testserver", db_url)
    assert "strict-transport-security" not in plain
    assert plain["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in plain["content-security-policy"]
    assert "script-src 'self'" in plain["content-security-policy"]
    secure = await _headers("https://cx.agency.gov", db_url)
    assert secure["strict-transport-security"] == "max-age=31536000"
    assert "Secure" in secure["set-cookie"]
