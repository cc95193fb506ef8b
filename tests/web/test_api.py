"""The JSON API end to end, on SQLite and PostgreSQL."""

from __future__ import annotations

import httpx
from sqlmodel import func, select

from app.config import Settings
from app.db.engine import make_engine, make_sessionmaker
from app.db.models import CardVote, Event, LevelDecision, LevelVote, Participant, Workshop
from app.domain.definitions import definition_from_snapshot
from app.domain.phases import expand_phases
from app.services.security import PARTICIPANT, TokenCodec
from tests.conftest import TEST_SECRET, FacilitatorLogin, make_facilitator


async def _count(settings: Settings, model: type) -> int:
    engine = make_engine(settings.database_url)
    async with make_sessionmaker(engine)() as session:
        n = (await session.exec(select(func.count()).select_from(model))).one()
    await engine.dispose()
    return int(n)


async def _create(client: httpx.AsyncClient, fac: FacilitatorLogin, **body: object) -> dict:
    payload = {"definition": "dhs-cx-maturity", "title": "Passport Services CX", **body}
    response = await client.post("/api/workshops", json=payload, headers=fac.headers)
    assert response.status_code == 201, response.text
    return response.json()


async def test_healthz(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "script-src 'self'" in response.headers["content-security-policy"]


async def test_token_right_and_wrong(client: httpx.AsyncClient, facilitator: FacilitatorLogin):
    ok = await client.post(
        "/api/auth/token", json={"email": "LEAD@agency.gov ", "password": facilitator.password}
    )
    assert ok.status_code == 200
    assert ok.json()["token_type"] == "bearer"
    for body in (
        {"email": facilitator.email, "password": "wrong password!"},
        {"email": "nobody@agency.gov", "password": facilitator.password},
    ):
        bad = await client.post("/api/auth/token", json=body)
        assert bad.status_code == 401
        assert bad.json()["detail"] == "the email or password is wrong"
    missing = await client.post("/api/auth/token", json={"email": facilitator.email})
    assert missing.status_code == 422
    forged = await client.get("/api/workshops", headers={"Authorization": "Bearer forged.token"})
    assert forged.status_code == 401


async def test_definitions_listed(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/definitions")
    assert response.status_code == 200
    by_id = {d["id"]: d for d in response.json()}
    dhs = by_id["dhs-cx-maturity"]
    assert [level["name"] for level in dhs["scale"]] == ["Emerging", "Established", "Exemplary"]
    assert [f["name"] for f in dhs["functions"]] == [
        "Measurement",
        "Governance & Strategy",
        "Culture & Organization",
        "Customer Understanding",
        "Service Design & Improvement",
    ]
    assert all(6 <= f["cards"] <= 9 for f in dhs["functions"])
    assert dhs["phases"] == 27
    assert len(by_id) >= 2
    assert any(len(d["scale"]) == 4 for d in by_id.values())


async def test_create_workshop(
    client: httpx.AsyncClient, facilitator: FacilitatorLogin, settings: Settings
) -> None:
    created = await _create(client, facilitator)
    assert len(created["join_code"]) == 6
    assert created["join_url"] == f"http://testserver/join/{created['join_code']}"
    assert created["state"] == "lobby"
    assert created["participants"] == 0
    listed = await client.get("/api/workshops", headers=facilitator.headers)
    assert [w["id"] for w in listed.json()] == [created["id"]]
    got = await client.get(f"/api/workshops/{created['id']}", headers=facilitator.headers)
    assert got.json()["title"] == "Passport Services CX"
    assert await _count(settings, Event) == 1  # workshop.created


async def test_create_workshop_refusals_write_nothing(
    client: httpx.AsyncClient, facilitator: FacilitatorLogin, settings: Settings
) -> None:
    anonymous = await client.post(
        "/api/workshops", json={"definition": "dhs-cx-maturity", "title": "x"}
    )
    assert anonymous.status_code == 401
    unknown = await client.post(
        "/api/workshops",
        json={"definition": "no-such-thing", "title": "x"},
        headers=facilitator.headers,
    )
    assert unknown.status_code == 422
    assert "no definition 'no-such-thing'" in unknown.json()["detail"]
    assert "dhs-cx-maturity" in unknown.json()["detail"]
    for title in ("", "   ", "x" * 201, "bell\x07"):
        bad = await client.post(
            "/api/workshops",
            json={"definition": "dhs-cx-maturity", "title": title},
            headers=facilitator.headers,
        )
        assert bad.status_code == 422, title
    extra = await client.post(
        "/api/workshops",
        json={"definition": "dhs-cx-maturity", "title": "ok", "surprise": 1},
        headers=facilitator.headers,
    )
    assert extra.status_code == 422
    assert await _count(settings, Workshop) == 0
    assert await _count(settings, Event) == 0


async def test_create_workshop_covering_chosen_functions(
    client: httpx.AsyncClient, facilitator: FacilitatorLogin, settings: Settings
) -> None:
    chosen = ["customer-understanding", "measurement"]
    created = await client.post(
        "/api/workshops",
        json={"definition": "dhs-cx-maturity", "title": "Two functions", "functions": chosen},
        headers=facilitator.headers,
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["functions"] == chosen
    score = await client.get(f"/api/workshops/{body['id']}/score", headers=facilitator.headers)
    assert [f["function_id"] for f in score.json()["functions"]] == chosen
    # The agenda runs through the chosen functions only, in the chosen order.
    engine = make_engine(settings.database_url)
    async with make_sessionmaker(engine)() as session:
        workshop = await session.get(Workshop, body["id"])
        assert workshop is not None
        definition = definition_from_snapshot(workshop.definition)
    await engine.dispose()
    keys = [p.key for p in expand_phases(definition)]
    assert keys[:2] == ["lobby", "customer-understanding.sort"]
    assert {k.split(".")[0] for k in keys if "." in k} == set(chosen)
    everything = await _create(client, facilitator)
    assert len(everything["functions"]) == 5


async def test_create_workshop_refuses_functions_it_does_not_have(
    client: httpx.AsyncClient, facilitator: FacilitatorLogin, settings: Settings
) -> None:
    for functions, says in (
        (["measurement", "no-such-function"], "no core function 'no-such-function'"),
        (["measurement", "measurement"], "chosen once"),
        ([], "at least one"),
    ):
        bad = await client.post(
            "/api/workshops",
            json={"definition": "dhs-cx-maturity", "title": "x", "functions": functions},
            headers=facilitator.headers,
        )
        assert bad.status_code == 422, functions
        assert says in bad.json()["detail"], bad.json()
    assert await _count(settings, Workshop) == 0


async def test_other_facilitator_cannot_see_workshop(
    client: httpx.AsyncClient, facilitator: FacilitatorLogin, settings: Settings
) -> None:
    created = await _create(client, facilitator)
    other = await make_facilitator(client, settings, "other@agency.gov")
    for path in (f"/api/workshops/{created['id']}", f"/api/workshops/{created['id']}/score"):
        assert (await client.get(path, headers=other.headers)).status_code == 404
        assert (await client.get(path)).status_code == 401
    assert (await client.get("/api/workshops", headers=other.headers)).json() == []


async def test_join_workshop(
    client: httpx.AsyncClient, facilitator: FacilitatorLogin, settings: Settings
) -> None:
    created = await _create(client, facilitator)
    url = f"/api/workshops/{created['id']}/participants"
    code = created["join_code"]
    joined = await client.post(
        url, json={"join_code": code.lower(), "display_name": "  Sam   Lee ", "organisation": "CBP"}
    )
    assert joined.status_code == 201, joined.text
    body = joined.json()
    assert body["display_name"] == "Sam Lee"
    payload = TokenCodec(TEST_SECRET).loads(PARTICIPANT, body["token"], max_age_s=60)
    assert payload == {"w": created["id"], "p": body["participant_id"]}

    same_name = await client.post(url, json={"join_code": code, "display_name": "sam lee"})
    assert same_name.status_code == 409
    assert "already uses the name" in same_name.json()["detail"]
    wrong_code = await client.post(url, json={"join_code": "ZZZZZZ", "display_name": "Ana"})
    assert wrong_code.status_code == 403
    nowhere = await client.post(
        "/api/workshops/nope/participants", json={"join_code": code, "display_name": "Ana"}
    )
    assert nowhere.status_code == 403
    for name in ("", "   ", "x" * 61, "zero\u200bwidth"):
        bad = await client.post(url, json={"join_code": code, "display_name": name})
        assert bad.status_code == 422, name
    assert await _count(settings, Participant) == 1
    count = await client.get(f"/api/workshops/{created['id']}", headers=facilitator.headers)
    assert count.json()["participants"] == 1


async def test_join_ended_workshop_is_refused(
    client: httpx.AsyncClient, facilitator: FacilitatorLogin, settings: Settings
) -> None:
    created = await _create(client, facilitator)
    engine = make_engine(settings.database_url)
    async with make_sessionmaker(engine)() as session:
        workshop = await session.get(Workshop, created["id"])
        assert workshop is not None
        workshop.state = "ended"
        session.add(workshop)
        await session.commit()
    await engine.dispose()
    response = await client.post(
        f"/api/workshops/{created['id']}/participants",
        json={"join_code": created["join_code"], "display_name": "Late"},
    )
    assert response.status_code == 409
    assert "ended" in response.json()["detail"]


async def test_score_reflects_votes_and_decisions(
    client: httpx.AsyncClient, facilitator: FacilitatorLogin, settings: Settings
) -> None:
    created = await _create(client, facilitator)
    ids = []
    for i in range(23):
        response = await client.post(
            f"/api/workshops/{created['id']}/participants",
            json={"join_code": created["join_code"], "display_name": f"Person {i}"},
        )
        ids.append(response.json()["participant_id"])
    definition = {d["id"]: d for d in (await client.get("/api/definitions")).json()}
    function_id = definition["dhs-cx-maturity"]["functions"][0]["id"]
    snapshot = (await _workshop_definition(settings, created["id"]))["functions"][0]
    cards = snapshot["cards"]

    engine = make_engine(settings.database_url)
    async with make_sessionmaker(engine)() as session:
        # Level votes 6 / 15 / 2 -> Tastle-Wierman 0.60, median Established.
        levels = [0] * 6 + [1] * 15 + [2] * 2
        for pid, level in zip(ids, levels, strict=True):
            session.add(
                LevelVote(
                    workshop_id=created["id"],
                    participant_id=pid,
                    function_id=function_id,
                    round=1,
                    level=level,
                )
            )
        # Every card: everyone says "we do this" -> all practised -> top level.
        for card in cards:
            for pid in ids:
                session.add(
                    CardVote(
                        workshop_id=created["id"],
                        participant_id=pid,
                        function_id=function_id,
                        card_id=card["id"],
                        choice="do",
                    )
                )
        session.add(
            LevelDecision(
                workshop_id=created["id"], function_id=function_id, level=1, note="Agreed"
            )
        )
        await session.commit()
    await engine.dispose()

    response = await client.get(
        f"/api/workshops/{created['id']}/score", headers=facilitator.headers
    )
    assert response.status_code == 200, response.text
    score = response.json()
    assert score["scale"] == ["Emerging", "Established", "Exemplary"]
    first = score["functions"][0]
    assert first["function_id"] == function_id
    assert first["function_name"] == "Measurement"
    assert first["voted"]["n_voters"] == 23
    assert round(first["voted"]["agreement"], 2) == 0.60
    assert first["voted"]["level"] == 1
    assert first["card_level"]["level"] == 2
    assert first["outcome_level"] == 1
    assert first["recorded_note"] == "Agreed"
    others = score["functions"][1:]
    assert all(f["voted"]["n_voters"] == 0 and f["outcome_level"] is None for f in others)


async def _workshop_definition(settings: Settings, workshop_id: str) -> dict:
    engine = make_engine(settings.database_url)
    async with make_sessionmaker(engine)() as session:
        workshop = await session.get(Workshop, workshop_id)
        assert workshop is not None
        definition = workshop.definition
    await engine.dispose()
    return definition
