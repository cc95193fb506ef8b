"""The JSON API: the stable surface for scripts and integrations."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from sqlalchemy import text
from sqlmodel import func, select

from app.db.models import Participant, Workshop
from app.domain.definitions import expand_phases
from app.services import scores
from app.services import workshops as workshop_service
from app.services.errors import Forbidden
from app.services.facilitators import authenticate
from app.services.security import ACCESS, PARTICIPANT
from app.web import ratelimit
from app.web.deps import (
    CodecDep,
    CurrentFacilitator,
    DefinitionsDep,
    SessionDep,
    SettingsDep,
)
from app.web.ratelimit import client_address
from app.web.schemas import (
    DefinitionOut,
    FunctionOut,
    HealthOut,
    LevelOut,
    ParticipantCreate,
    ParticipantOut,
    TokenIn,
    TokenOut,
    WorkshopCreate,
    WorkshopOut,
    error_responses,
)

router = APIRouter()


@router.get(
    "/healthz",
    response_model=HealthOut,
    tags=["health"],
    responses=error_responses(503, s503="The database does not answer"),
)
async def healthz(session: SessionDep) -> HealthOut:
    try:
        await session.exec(text("SELECT 1"))  # type: ignore[call-overload]
    except Exception as exc:
        raise HTTPException(503, "the database does not answer") from exc
    return HealthOut(status="ok")


@router.post(
    "/api/auth/token",
    response_model=TokenOut,
    tags=["auth"],
    responses=error_responses(
        400,
        401,
        422,
        429,
        503,
        s401="The email or password is wrong",
        s429="Too many failed sign-ins",
    ),
)
async def issue_token(
    request: Request, body: TokenIn, session: SessionDep, codec: CodecDep, settings: SettingsDep
) -> TokenOut:
    limiter = request.app.state.sign_in_limiter
    keys = (client_address(request), f"email:{body.email.strip().lower()}")
    for key in keys:
        await ratelimit.check(limiter, key, "failed sign-ins")
    facilitator = await authenticate(session, body.email, body.password)
    if facilitator is None:
        for key in keys:
            await limiter.failed(key)
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "the email or password is wrong",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return TokenOut(
        access_token=codec.dumps(ACCESS, {"f": facilitator.id}),
        expires_in=settings.access_token_hours * 3600,
    )


@router.get("/api/definitions", response_model=list[DefinitionOut], tags=["definitions"])
async def list_definitions(definitions: DefinitionsDep) -> list[DefinitionOut]:
    return [
        DefinitionOut(
            id=d.id,
            title=d.title,
            description=d.description,
            scale=[LevelOut(id=level.id, name=level.name) for level in d.scale],
            functions=[FunctionOut(id=f.id, name=f.name, cards=len(f.cards)) for f in d.functions],
            phases=len(expand_phases(d)),
        )
        for d in sorted(definitions.values(), key=lambda d: d.id)
    ]


async def _workshop_out(
    session: SessionDep, settings: SettingsDep, workshop: Workshop
) -> WorkshopOut:
    count = (
        await session.exec(
            select(func.count())
            .select_from(Participant)
            .where(Participant.workshop_id == workshop.id, Participant.removed_at == None)  # noqa: E711
        )
    ).one()
    return WorkshopOut.of(workshop, settings.public_url, int(count))


@router.post(
    "/api/workshops",
    status_code=201,
    response_model=WorkshopOut,
    tags=["workshops"],
    responses=error_responses(
        400,
        401,
        409,
        422,
        503,
        s409="No free join code could be drawn; try again",
        s422="Malformed, or an unknown definition, a title that is blank or has control "
        "characters, or core functions the definition does not have",
    ),
)
async def create_workshop(
    body: WorkshopCreate,
    facilitator: CurrentFacilitator,
    session: SessionDep,
    settings: SettingsDep,
    definitions: DefinitionsDep,
) -> WorkshopOut:
    definition = definitions.get(body.definition)
    if definition is None:
        known = ", ".join(sorted(definitions)) or "none installed"
        raise HTTPException(422, f"no definition '{body.definition}' (installed: {known})")
    workshop = await workshop_service.create_workshop(
        session,
        facilitator_id=facilitator.id,
        definition=definition,
        title=body.title,
        anonymous=body.anonymous,
        functions=body.functions,
    )
    return await _workshop_out(session, settings, workshop)


@router.get(
    "/api/workshops",
    response_model=list[WorkshopOut],
    tags=["workshops"],
    responses=error_responses(401, 503),
)
async def list_workshops(
    facilitator: CurrentFacilitator, session: SessionDep, settings: SettingsDep
) -> list[WorkshopOut]:
    rows = (
        await session.exec(
            select(Workshop)
            .where(Workshop.facilitator_id == facilitator.id)
            .order_by(Workshop.created_at.desc())  # type: ignore[attr-defined]
        )
    ).all()
    return [await _workshop_out(session, settings, w) for w in rows]


@router.get(
    "/api/workshops/{workshop_id}",
    response_model=WorkshopOut,
    tags=["workshops"],
    responses=error_responses(401, 404, 503),
)
async def get_workshop(
    workshop_id: str, facilitator: CurrentFacilitator, session: SessionDep, settings: SettingsDep
) -> WorkshopOut:
    workshop = await workshop_service.owned_workshop(session, workshop_id, facilitator.id)
    return await _workshop_out(session, settings, workshop)


@router.post(
    "/api/workshops/{workshop_id}/participants",
    status_code=201,
    response_model=ParticipantOut,
    tags=["participants"],
    responses=error_responses(
        400,
        403,
        409,
        422,
        429,
        503,
        s403="Wrong join code (or no such workshop: the answer is the same)",
        s409="Name taken, or the workshop has ended",
        s422="Malformed, or a name or organisation that is blank or has control characters",
        s429="Too many attempts with a wrong join code",
    ),
)
async def join_workshop(
    request: Request,
    workshop_id: str,
    body: ParticipantCreate,
    session: SessionDep,
    codec: CodecDep,
) -> ParticipantOut:
    limiter = request.app.state.join_limiter
    address = client_address(request)
    await ratelimit.check(limiter, address, "attempts with a wrong join code")
    try:
        joined = await workshop_service.join_workshop(
            session,
            workshop_id=workshop_id,
            join_code=body.join_code,
            display_name=body.display_name,
            organisation=body.organisation,
        )
    except Forbidden:
        await limiter.failed(address)
        raise
    await request.app.state.live.publish(joined.workshop.id, joined.event)
    token = codec.dumps(PARTICIPANT, {"w": joined.workshop.id, "p": joined.participant.id})
    return ParticipantOut(
        participant_id=joined.participant.id,
        workshop_id=joined.workshop.id,
        display_name=joined.participant.display_name,
        token=token,
    )


@router.get(
    "/api/workshops/{workshop_id}/score",
    tags=["scores"],
    responses=error_responses(401, 404, 503),
    response_model=dict[str, Any],
)
async def workshop_score(
    workshop_id: str, facilitator: CurrentFacilitator, session: SessionDep
) -> dict[str, Any]:
    workshop = await workshop_service.owned_workshop(session, workshop_id, facilitator.id)
    return await scores.workshop_score(session, workshop)
