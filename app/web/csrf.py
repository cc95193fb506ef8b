"""CSRF protection for HTML forms: a double-submit token.

Every page with a form gets a random token in a cookie and the same token in a
hidden field; a POST is accepted only when both are present and equal. A page on
another origin can make the browser send the cookie but cannot read it to fill in
the field.
"""

from __future__ import annotations

import secrets

from fastapi import HTTPException, Request
from starlette.responses import Response

CSRF_COOKIE = "cxw_csrf"
CSRF_FIELD = "csrf_token"


def csrf_token(request: Request) -> str:
    token = request.cookies.get(CSRF_COOKIE) or getattr(request.state, "csrf_token", None)
    if not token:
        token = secrets.token_urlsafe(32)
    request.state.csrf_token = token
    return token


def set_csrf_cookie(request: Request, response: Response, *, secure: bool) -> None:
    token = getattr(request.state, "csrf_token", None)
    if token and request.cookies.get(CSRF_COOKIE) != token:
        response.set_cookie(
            CSRF_COOKIE, token, httponly=True, samesite="strict", secure=secure, path="/"
        )


def check_csrf(request: Request, submitted: str | None) -> None:
    cookie = request.cookies.get(CSRF_COOKIE)
    if not cookie or not submitted or not secrets.compare_digest(cookie, submitted):
        raise HTTPException(
            403, "this form has expired or came from another site; reload the page and try again"
        )
