"""Who may do what over HTTP: every route of the app against six kinds of caller.

The actors, each with the credentials a browser or script of theirs would send:

* `anonymous`: nothing;
* `participant`: a participant of workshop W (cookie `cxw_p_<W>`, and the same token
  as a bearer token, to show that participant tokens open no API);
* `other_participant`: a participant of another workshop W2, holding its W2 token both
  under its own cookie and under W's cookie name (a token copied across workshops);
* `removed`: a participant of W whom the facilitator removed (cookie `cxw_p_<W>`);
* `other_facilitator`: the facilitator of W2 (session cookie and bearer token);
* `facilitator`: W's own facilitator (session cookie and bearer token).

`CASES` is the table: for each route (method and path as registered), the status each
actor gets (`303 /signin` is a redirect and where to). A test fails when a route of
`app.routes` is missing from the table, so a new route cannot go unchecked. For every
request the whole database (every row of every table) is compared before and after:
only the actors a case lists under `writes` may change anything. And W's join code
(its only secret besides tokens) must not appear in any answer to someone who is not
W's facilitator, unless they sent it themselves.

The WebSocket route is listed here for completeness (it has no HTTP surface: a plain
GET is 404); its handshake and every command are the matrix in
tests/realtime/test_permissions.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from sqlalchemy import text
from sqlmodel import SQLModel, col, update

from app.config import Settings
from app.db.engine import make_engine, make_sessionmaker
from app.db.models import Participant
from app.domain.definitions import load_definitions
from app.main import create_app
from app.services.facilitators import create_facilitator
from app.services.security import ACCESS, PARTICIPANT, SESSION
from app.services.workshops import create_workshop, join_workshop
from app.web.csrf import CSRF_COOKIE
from app.web.deps import SESSION_COOKIE
from tests.conftest import make_settings

ACTORS = (
    "anonymous",
    "participant",
    "other_participant",
    "removed",
    "other_facilitator",
    "facilitator",
)
NOT_FACILITATORS = ("anonymous", "participant", "other_participant", "removed")
FACILITATORS = frozenset({"other_facilitator", "facilitator"})
EVERYONE = frozenset(ACTORS)
PASSWORD = "correct horse battery"
CSRF = "csrf-token-for-the-test-0123456789"


def expect(default: str, **actors: str) -> dict[str, str]:
    unknown = set(actors) - set(ACTORS)
    assert not unknown, unknown
    return {actor: actors.get(actor, default) for actor in ACTORS}


# W's own facilitator gets it; another facilitator cannot tell it from a missing one.
OWNER_API = expect("401", other_facilitator="404", facilitator="200")
OWNER_PAGE = expect("303 /signin", other_facilitator="404", facilitator="200")
PUBLIC = expect("200")
PARTICIPANT_PAGE = expect("303 /join", participant="200")


@dataclass
class World:
    app: FastAPI
    w: str  # workshop W, run by `facilitator`
    w2: str  # workshop W2, run by `other_facilitator`
    code: str  # W's join code
    title: str
    headers: dict[str, dict[str, str]] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    export: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Case:
    route: tuple[str, str]  # as registered: ("GET", "/api/workshops/{workshop_id}")
    expected: dict[str, str]
    url: str = ""  # with {w}, {w2}, {code}, {token}; default: the route's path
    json: Callable[[World, int], Any] | None = None  # given the world and a serial number
    form: dict[str, str] | None = None  # a form post; with `csrf_token` unless csrf=False
    csrf: bool = True
    writes: frozenset[str] = frozenset()  # actors whose request may change the database
    label: str = ""
    check: Callable[[World, str, httpx.Response], None] | None = None

    @property
    def name(self) -> str:
        return f"{self.route[0]} {self.route[1]}" + (f" ({self.label})" if self.label else "")


def _not_listing_w(world: World, actor: str, response: httpx.Response) -> None:
    if actor == "other_facilitator":  # (an imported copy of W has the title, not the id)
        assert world.w not in response.text


def _lists_w(world: World, actor: str, response: httpx.Response) -> None:
    if actor == "facilitator":
        assert world.w in response.text
    _not_listing_w(world, actor, response)


CASES: list[Case] = [
    # --- framework and static ----------------------------------------------------
    Case(("GET", "/openapi.json"), PUBLIC),
    Case(("GET", "/docs"), PUBLIC),
    Case(("GET", "/docs/oauth2-redirect"), PUBLIC),
    Case(("GET", "/redoc"), PUBLIC),
    Case(("GET", "/static"), PUBLIC, url="/static/css/app.css"),
    Case(
        ("GET", "/static"),
        expect("404"),
        url="/static/..%2Fapp%2Fconfig.py",
        label="no way out of the folder",
    ),
    Case(("GET", "/exports/exports.css"), PUBLIC),
    Case(("GET", "/healthz"), PUBLIC),
    Case(
        ("WEBSOCKET", "/ws/workshops/{workshop_id}"),
        expect("404"),
        url="/ws/workshops/{w}",
        label="plain HTTP; the socket: tests/realtime/test_permissions.py",
    ),
    # --- JSON API ----------------------------------------------------------------
    Case(
        ("POST", "/api/auth/token"),
        expect("401"),
        json=lambda wd, n: {"email": "lead@agency.gov", "password": "not the password"},
        label="wrong password, whoever asks",
    ),
    Case(
        ("POST", "/api/auth/token"),
        PUBLIC,
        json=lambda wd, n: {"email": "lead@agency.gov", "password": PASSWORD},
        label="the password is the credential",
    ),
    Case(("GET", "/api/definitions"), PUBLIC),
    Case(
        ("POST", "/api/workshops"),
        expect("401", other_facilitator="201", facilitator="201"),
        json=lambda wd, n: {"definition": "dhs-cx-maturity", "title": "New one"},
        writes=FACILITATORS,
    ),
    Case(
        ("GET", "/api/workshops"),
        expect("401", other_facilitator="200", facilitator="200"),
        check=_lists_w,
    ),
    Case(("GET", "/api/workshops/{workshop_id}"), OWNER_API, url="/api/workshops/{w}"),
    Case(
        ("POST", "/api/workshops/{workshop_id}/participants"),
        expect("201"),
        url="/api/workshops/{w}/participants",
        json=lambda wd, n: {"join_code": wd.code, "display_name": f"Joiner {n}"},
        writes=EVERYONE,
        label="with the join code: anyone may join",
    ),
    Case(
        ("POST", "/api/workshops/{workshop_id}/participants"),
        expect("403"),
        url="/api/workshops/{w}/participants",
        json=lambda wd, n: {"join_code": "WRONG1", "display_name": "Guesser"},
        label="wrong code",
    ),
    Case(
        ("POST", "/api/workshops/{workshop_id}/participants"),
        expect("403"),
        url="/api/workshops/{w2}/participants",
        json=lambda wd, n: {"join_code": wd.code, "display_name": "Wrong room"},
        label="W's code does not open W2",
    ),
    Case(("GET", "/api/workshops/{workshop_id}/score"), OWNER_API, url="/api/workshops/{w}/score"),
    Case(
        ("GET", "/api/workshops/{workshop_id}/export"),
        OWNER_API,
        url="/api/workshops/{w}/export?format=json",
    ),
    Case(
        ("GET", "/api/workshops/{workshop_id}/export"),
        OWNER_API,
        url="/api/workshops/{w}/export?format=csv&table=notes",
        label="csv",
    ),
    Case(
        ("POST", "/api/workshops/import"),
        expect("401", other_facilitator="201", facilitator="201"),
        json=lambda wd, n: wd.export,
        writes=FACILITATORS,
        label="a copy belongs to whoever imports it",
    ),
    Case(("GET", "/api/compare"), OWNER_API, url="/api/compare?workshop={w}"),
    # --- pages -------------------------------------------------------------------
    Case(("GET", "/"), PUBLIC),
    Case(
        ("GET", "/signin"),
        expect("200", other_facilitator="303 /dashboard", facilitator="303 /dashboard"),
    ),
    Case(
        ("POST", "/signin"),
        expect("401"),
        form={"email": "lead@agency.gov", "password": "not the password"},
        label="wrong password",
    ),
    Case(
        ("POST", "/signin"),
        expect("403"),
        form={"email": "lead@agency.gov", "password": PASSWORD},
        csrf=False,
        label="no CSRF token, right password",
    ),
    Case(
        ("POST", "/signin"),
        expect("303 /dashboard"),
        form={"email": "lead@agency.gov", "password": PASSWORD},
        label="the password is the credential",
    ),
    Case(("POST", "/signout"), expect("303 /"), form={}),
    Case(("POST", "/signout"), expect("403"), form={}, csrf=False, label="no CSRF token"),
    Case(
        ("GET", "/dashboard"),
        expect("303 /signin", other_facilitator="200", facilitator="200"),
        check=_lists_w,
    ),
    Case(
        ("POST", "/dashboard/workshops"),
        expect("303 /signin", other_facilitator="303 /dashboard", facilitator="303 /dashboard"),
        form={"title": "From the dashboard", "definition": "dhs-cx-maturity"},
        writes=FACILITATORS,
    ),
    Case(
        ("POST", "/dashboard/workshops"),
        expect("303 /signin", other_facilitator="403", facilitator="403"),
        form={"title": "Forged", "definition": "dhs-cx-maturity"},
        csrf=False,
        label="no CSRF token",
    ),
    Case(
        ("POST", "/dashboard/import"),
        expect("303 /signin", other_facilitator="422", facilitator="422"),
        form={},
        label="no file: refused, nothing written",
    ),
    Case(
        ("POST", "/dashboard/import"),
        expect("303 /signin", other_facilitator="403", facilitator="403"),
        form={},
        csrf=False,
        label="no CSRF token",
    ),
    Case(("GET", "/workshops/{workshop_id}/summary"), OWNER_PAGE, url="/workshops/{w}/summary"),
    Case(("GET", "/compare"), OWNER_PAGE, url="/compare?workshop={w}"),
    Case(("GET", "/join"), PUBLIC),
    Case(
        ("GET", "/join/{code}"),
        expect("200", participant="303 /w/{w}"),
        url="/join/{code}",
        label="a participant already in is sent to the room",
    ),
    Case(("GET", "/join/{code}"), expect("404"), url="/join/WRONG1", label="wrong code"),
    Case(
        ("POST", "/join"),
        expect("303 /w/{w}"),
        form={"code": "{code}", "display_name": "Form joiner {n}"},
        writes=EVERYONE,
        label="with the join code: anyone may join",
    ),
    Case(
        ("POST", "/join"),
        expect("403"),
        form={"code": "{code}", "display_name": "Forged joiner"},
        csrf=False,
        label="no CSRF token",
    ),
    Case(
        ("GET", "/w/{wid}/rejoin"),
        expect("303 /join", participant="303 /w/{w}"),
        url="/w/{w}/rejoin?t={token}",
        label="each with their own token",
    ),
    Case(("GET", "/w/{wid}"), PARTICIPANT_PAGE, url="/w/{w}"),
    Case(("GET", "/w/{wid}/stage"), PARTICIPANT_PAGE, url="/w/{w}/stage"),
    Case(("GET", "/w/{wid}/outline"), PARTICIPANT_PAGE, url="/w/{w}/outline"),
    Case(("GET", "/console/{wid}"), OWNER_PAGE, url="/console/{w}"),
    Case(("GET", "/console/{wid}/stage"), OWNER_PAGE, url="/console/{w}/stage"),
    Case(("GET", "/console/{wid}/outline"), OWNER_PAGE, url="/console/{w}/outline"),
    Case(("GET", "/projector/{wid}"), OWNER_PAGE, url="/projector/{w}"),
    Case(("GET", "/projector/{wid}/stage"), OWNER_PAGE, url="/projector/{w}/stage"),
    Case(
        ("GET", "/projector/{wid}/open"),
        expect("404"),
        url="/projector/{w}/open?k=forged",
        label="a forged projector link",
    ),
]


def registered_routes(app: FastAPI) -> set[tuple[str, str]]:
    """(method, path) of every route: HTTP methods, mounts as GET, sockets as WEBSOCKET."""
    found: set[tuple[str, str]] = set()
    for route in iter_route_contexts(app.router.routes):
        path = route.path
        assert path is not None
        methods = route.methods
        if methods:
            found |= {(m, path) for m in methods if m != "HEAD"}
        elif type(route.route).__name__ == "Mount":
            found.add(("GET", path))
        else:
            found.add(("WEBSOCKET", path))
    return found


def test_every_route_is_in_the_table(tmp_path: Any) -> None:
    app = create_app(make_settings(f"sqlite+aiosqlite:///{tmp_path / 'unused.db'}"))
    routes = registered_routes(app)
    tabled = {case.route for case in CASES}
    assert routes - tabled == set(), "routes with no authorization case"
    assert tabled - routes == set(), "cases for routes that do not exist"
    assert all(set(case.expected) == set(ACTORS) for case in CASES)


# --- the world: two workshops, six actors --------------------------------------------


async def _build(app: FastAPI, settings: Settings) -> World:
    engine = make_engine(settings.database_url)
    codec = app.state.codec
    definition = load_definitions()["dhs-cx-maturity"]
    async with make_sessionmaker(engine)() as session:
        lead = await create_facilitator(session, "lead@agency.gov", PASSWORD, "Lead")
        other = await create_facilitator(session, "other@agency.gov", PASSWORD, "Other")
        w = await create_workshop(
            session, facilitator_id=lead.id, definition=definition, title="Secret CX plans"
        )
        w2 = await create_workshop(
            session, facilitator_id=other.id, definition=definition, title="Elsewhere"
        )
        world = World(app=app, w=w.id, w2=w2.id, code=w.join_code, title=w.title)
        joined = {}
        for name, workshop in (("participant", w), ("removed", w), ("other_participant", w2)):
            found = await join_workshop(
                session, workshop_id=workshop.id, join_code=workshop.join_code, display_name=name
            )
            joined[name] = found.participant.id
            token = codec.dumps(PARTICIPANT, {"w": workshop.id, "p": found.participant.id})
            world.tokens[name] = token
        await session.exec(
            update(Participant)
            .where(col(Participant.id) == joined["removed"])
            .values(removed_at=datetime.now(UTC))
        )
        await session.commit()
    await engine.dispose()

    def cookie_header(cookies: dict[str, str]) -> dict[str, str]:
        return {"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())} if cookies else {}

    world.headers["anonymous"] = {}
    for name, workshop_id in (("participant", w.id), ("removed", w.id)):
        token = world.tokens[name]
        world.headers[name] = {
            **cookie_header({f"cxw_p_{workshop_id}": token}),
            "Authorization": f"Bearer {token}",
        }
    token = world.tokens["other_participant"]
    world.headers["other_participant"] = {
        **cookie_header({f"cxw_p_{w2.id}": token, f"cxw_p_{w.id}": token}),
        "Authorization": f"Bearer {token}",
    }
    for name, facilitator in (("facilitator", lead), ("other_facilitator", other)):
        world.tokens[name] = codec.dumps(ACCESS, {"f": facilitator.id})
        world.headers[name] = {
            **cookie_header({SESSION_COOKIE: codec.dumps(SESSION, {"f": facilitator.id})}),
            "Authorization": f"Bearer {world.tokens[name]}",
        }
    world.tokens["anonymous"] = "not-a-token"
    return world


async def fingerprint(settings: Settings) -> dict[str, list[str]]:
    """Every row of every table."""
    engine = make_engine(settings.database_url)
    found: dict[str, list[str]] = {}
    async with engine.connect() as conn:
        for table in SQLModel.metadata.sorted_tables:
            rows = (await conn.execute(text(f'SELECT * FROM "{table.name}"'))).all()
            found[table.name] = sorted(repr(tuple(row)) for row in rows)
    await engine.dispose()
    return found


def _fill(template: str, world: World, actor: str, n: int) -> str:
    return template.format(w=world.w, w2=world.w2, code=world.code, token=world.tokens[actor], n=n)


async def _send(world: World, case: Case, actor: str, n: int) -> httpx.Response:
    headers = dict(world.headers[actor])
    url = _fill(case.url or case.route[1], world, actor, n)
    method = "GET" if case.route[0] == "WEBSOCKET" else case.route[0]
    kwargs: dict[str, Any] = {}
    if case.json is not None:
        kwargs["json"] = case.json(world, n)
    if case.form is not None:
        form = {k: _fill(v, world, actor, n) for k, v in case.form.items()}
        if case.csrf:
            form["csrf_token"] = CSRF
            cookie = f"{CSRF_COOKIE}={CSRF}"
            headers["Cookie"] = f"{headers['Cookie']}; {cookie}" if "Cookie" in headers else cookie
        kwargs["data"] = form
    # A fresh client per request: no cookie set by one answer reaches the next actor.
    transport = httpx.ASGITransport(app=world.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        return await http.request(method, url, headers=headers, **kwargs)


def _outcome(world: World, response: httpx.Response) -> str:
    if response.is_redirect:
        location = response.headers["location"]
        return f"{response.status_code} {location.replace(world.w, '{w}')}"
    return str(response.status_code)


@pytest.fixture
async def world(client: httpx.AsyncClient, settings: Settings) -> World:
    app: FastAPI = client.app  # type: ignore[attr-defined]
    built = await _build(app, settings)
    exported = await client.get(
        f"/api/workshops/{built.w}/export", headers=built.headers["facilitator"]
    )
    assert exported.status_code == 200
    built.export = exported.json()
    return built


async def test_every_route_as_every_actor(world: World, settings: Settings) -> None:
    failures: list[str] = []
    n = 0
    for case in CASES:
        for actor in ACTORS:
            n += 1
            world.app.state.sign_in_limiter.reset()
            world.app.state.join_limiter.reset()
            before = await fingerprint(settings)
            response = await _send(world, case, actor, n)
            sent = response.request.url.query.decode() + response.request.content.decode()
            after = await fingerprint(settings)
            got = _outcome(world, response)
            wanted = case.expected[actor]
            where = f"{case.name} as {actor}"
            if got != wanted:
                failures.append(f"{where}: got {got}, expected {wanted}: {response.text[:200]}")
            if before != after and actor not in case.writes:
                changed = sorted(t for t in before if before[t] != after[t])
                failures.append(f"{where}: changed the database ({', '.join(changed)})")
            sent += response.request.url.path
            if actor != "facilitator" and world.code not in sent and world.code in response.text:
                failures.append(f"{where}: the answer shows W's join code")
            if case.check is not None:
                try:
                    case.check(world, actor, response)
                except AssertionError as exc:
                    failures.append(f"{where}: {exc or 'check failed'}")
    assert not failures, "\n".join(failures)
