"""Every error answer is JSON `{"detail": ..., "code": ...}`, the same on every route.

* `HTTPException` (a refused sign-in, a rate limit, an unknown route) gets a stable
  `code` from its status, and keeps its headers (`WWW-Authenticate`, `Retry-After`,
  `Allow`).
* The database being unreachable (a dropped PostgreSQL connection, a server that is
  restarting, a locked SQLite file) is the caller's cue to retry, not a server bug:
  503 `try_again` with `Retry-After`. The request's transaction was rolled back, so
  nothing was half-written; the pool reconnects by itself on the next request.
* A uniqueness race that no service turned into a clear message is 409 `conflict`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable
from typing import Any, cast

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DBAPIError, IntegrityError
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection
from starlette.routing import BaseRoute, Match
from starlette.websockets import WebSocket

log = logging.getLogger(__name__)

CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "rate_limited",
    503: "try_again",
}
RETRY_AFTER_S = 2
CLOSE_TRY_AGAIN = 1013  # WebSocket "try again later"


async def _close(ws: WebSocket, code: int, reason: str) -> None:
    """A socket cannot carry a JSON error body: close it (before the upgrade: HTTP 403)."""
    with contextlib.suppress(RuntimeError, OSError):
        await ws.close(code, reason)


async def _http_error(conn: HTTPConnection, exc: Exception) -> Response | None:
    assert isinstance(exc, HTTPException)
    if isinstance(conn, WebSocket):
        await _close(conn, 1008, "refused")
        return None
    assert isinstance(conn, Request)
    if exc.status_code < 400:
        return await http_exception_handler(conn, exc)
    headers = exc.headers
    if exc.status_code == 405:
        headers = {**(headers or {}), "Allow": _allowed_methods(conn)}
    body = {"detail": exc.detail, "code": CODES.get(exc.status_code, "error")}
    return JSONResponse(body, status_code=exc.status_code, headers=headers)


def _allowed_methods(conn: Request) -> str:
    """Every method the path answers to (Starlette names only the first route's).

    A literal path wins over a parameterised one, as in routing: `/api/workshops/import`
    is the import, not a workshop called "import".
    """
    found: dict[bool, set[str]] = {True: set(), False: set()}
    for route in _leaf_routes(conn.app.router.routes):
        methods = getattr(route, "methods", None)
        if methods:
            match, _ = route.matches(conn.scope)
            if match is not Match.NONE:
                found[not getattr(route, "param_convertors", None)] |= set(methods)
    return ", ".join(sorted(found[True] or found[False]))


def _leaf_routes(routes: list[BaseRoute]) -> Iterable[Any]:
    try:  # newer FastAPI keeps included routers whole; this lists their routes
        from fastapi.routing import iter_route_contexts
    except ImportError:  # pragma: no cover - older FastAPI copies them into the app
        return routes
    return iter_route_contexts(routes)


async def _database_error(conn: HTTPConnection, exc: Exception) -> Response | None:
    method = conn.scope.get("method", "WEBSOCKET")
    if isinstance(exc, IntegrityError):
        log.info("integrity conflict on %s %s: %s", method, conn.url.path, exc.orig)
        if isinstance(conn, WebSocket):
            await _close(conn, CLOSE_TRY_AGAIN, "conflict; reconnect")
            return None
        body = {"detail": "that changed while you acted; try again", "code": "conflict"}
        return JSONResponse(body, status_code=409)
    # The message names the failing statement's class only: never parameters or URLs.
    log.warning("database unavailable for %s %s: %s", method, conn.url.path, type(exc).__name__)
    if isinstance(conn, WebSocket):
        await _close(conn, CLOSE_TRY_AGAIN, "the database cannot be reached; reconnect")
        return None
    body = {
        "detail": "the database cannot be reached just now; nothing was saved, try again",
        "code": "try_again",
    }
    return JSONResponse(body, status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)})


def install(app: FastAPI) -> None:
    # One handler each for requests and sockets (Starlette types them apart).
    app.add_exception_handler(HTTPException, cast(Any, _http_error))
    # asyncpg raises plain ConnectionError/TimeoutError while connecting; SQLAlchemy
    # wraps errors on an open connection (terminated backend, lost socket) in DBAPIError.
    for exc in (DBAPIError, ConnectionError, TimeoutError):
        app.add_exception_handler(exc, cast(Any, _database_error))
