"""Dependencies: the session, settings, and who is calling."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Response, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel.ext.asyncio.session import AsyncSession

from app.config import Settings
from app.db.models import Facilitator
from app.domain.definitions import Definition
from app.services.security import ACCESS, SESSION, InvalidToken, TokenCodec

SESSION_COOKIE = "cxw_session"


def set_private_cookie(
    response: Response, settings: Settings, name: str, value: str, max_age_s: int
) -> None:
    """A credential cookie: HttpOnly, SameSite=Lax, Secure behind HTTPS, whole site."""
    response.set_cookie(
        name,
        value,
        max_age=max_age_s,
        httponly=True,
        samesite="lax",
        secure=settings.secure_cookies,
        path="/",
    )


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_codec(request: Request) -> TokenCodec:
    codec: TokenCodec = request.app.state.codec
    return codec


def get_definitions(request: Request) -> dict[str, Definition]:
    definitions: dict[str, Definition] = request.app.state.definitions
    return definitions


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.sessionmaker() as session:
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings)]
CodecDep = Annotated[TokenCodec, Depends(get_codec)]
DefinitionsDep = Annotated[dict[str, Definition], Depends(get_definitions)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]

_bearer = HTTPBearer(auto_error=False, description="Token from POST /api/auth/token")


async def facilitator_from_request(
    request: Request,
    session: AsyncSession,
    codec: TokenCodec,
    settings: Settings,
    credentials: HTTPAuthorizationCredentials | None,
) -> Facilitator | None:
    """The signed-in facilitator, from a bearer token or the session cookie."""
    candidates: list[tuple[str, str, int]] = []
    if credentials is not None and credentials.scheme.lower() == "bearer":
        candidates.append((ACCESS, credentials.credentials, settings.access_token_hours * 3600))
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        candidates.append((SESSION, cookie, settings.session_hours * 3600))
    for kind, token, max_age in candidates:
        try:
            payload = codec.loads(kind, token, max_age_s=max_age)
        except InvalidToken:
            continue
        facilitator_id = payload.get("f")
        if isinstance(facilitator_id, str):
            found = await session.get(Facilitator, facilitator_id)
            if found is not None:
                return found
    return None


async def optional_facilitator(
    request: Request,
    session: SessionDep,
    codec: CodecDep,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Facilitator | None:
    return await facilitator_from_request(request, session, codec, settings, credentials)


async def require_facilitator(
    facilitator: Annotated[Facilitator | None, Depends(optional_facilitator)],
) -> Facilitator:
    if facilitator is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "sign in as a facilitator: send 'Authorization: Bearer <token>' "
            "(from POST /api/auth/token) or use the sign-in page",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return facilitator


CurrentFacilitator = Annotated[Facilitator, Depends(require_facilitator)]
MaybeFacilitator = Annotated[Facilitator | None, Depends(optional_facilitator)]
