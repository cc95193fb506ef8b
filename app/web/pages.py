"""HTML pages: landing, facilitator sign-in and dashboard."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel import select

from app.db.models import Workshop
from app.exports import importer
from app.exports.checks import ImportRejected
from app.services import workshops as workshop_service
from app.services.errors import ServiceError
from app.services.facilitators import authenticate
from app.services.security import SESSION
from app.web.csrf import check_csrf, csrf_token, set_csrf_cookie
from app.web.deps import (
    SESSION_COOKIE,
    CodecDep,
    DefinitionsDep,
    MaybeFacilitator,
    SessionDep,
    SettingsDep,
    set_private_cookie,
)
from app.web.exports import MAX_IMPORT_BYTES, parse_export
from app.web.ratelimit import client_address

router = APIRouter(include_in_schema=False)


def render(
    request: Request, name: str, context: dict[str, Any], *, status_code: int = 200
) -> Response:
    settings = request.app.state.settings
    context = {"csrf_token": csrf_token(request), **context}
    response: Response = request.app.state.templates.TemplateResponse(
        request, name, context, status_code=status_code
    )
    set_csrf_cookie(request, response, secure=settings.secure_cookies)
    return response


@router.get("/", response_class=HTMLResponse)
async def landing(request: Request, facilitator: MaybeFacilitator) -> Response:
    return render(request, "landing.html", {"facilitator": facilitator})


@router.get("/signin", response_class=HTMLResponse)
async def signin_form(request: Request, facilitator: MaybeFacilitator) -> Response:
    if facilitator is not None:
        return RedirectResponse("/dashboard", status_code=303)
    return render(request, "signin.html", {"error": None, "email": ""})


@router.post("/signin", response_class=HTMLResponse)
async def signin(
    request: Request,
    session: SessionDep,
    codec: CodecDep,
    settings: SettingsDep,
    email: Annotated[str, Form(max_length=254)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    check_csrf(request, csrf_token)
    limiter = request.app.state.sign_in_limiter
    keys = (client_address(request), f"email:{email.strip().lower()}")
    if any([await limiter.blocked(key) for key in keys]):
        return render(
            request,
            "signin.html",
            {
                "error": "Too many failed sign-ins. Wait a few minutes and try again.",
                "email": email,
            },
            status_code=429,
        )
    facilitator = await authenticate(session, email, password) if email and password else None
    if facilitator is None:
        for key in keys:
            await limiter.failed(key)
        return render(
            request,
            "signin.html",
            {"error": "The email or password is wrong.", "email": email},
            status_code=401,
        )
    response = RedirectResponse("/dashboard", status_code=303)
    session_token = codec.dumps(SESSION, {"f": facilitator.id})
    set_private_cookie(
        response, settings, SESSION_COOKIE, session_token, settings.session_hours * 3600
    )
    return response


@router.post("/signout")
async def signout(request: Request, csrf_token: Annotated[str | None, Form()] = None) -> Response:
    check_csrf(request, csrf_token)
    response = RedirectResponse("/", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


async def _dashboard(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    definitions: DefinitionsDep,
    facilitator: Any,
    *,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    workshops = (
        await session.exec(
            select(Workshop)
            .where(Workshop.facilitator_id == facilitator.id)
            .order_by(Workshop.created_at.desc())  # type: ignore[attr-defined]
        )
    ).all()
    return render(
        request,
        "dashboard.html",
        {
            "facilitator": facilitator,
            "workshops": workshops,
            "definitions": sorted(definitions.values(), key=lambda d: d.title),
            "public_url": settings.public_url,
            "error": error,
        },
        status_code=status_code,
    )


@router.get("/dashboard", response_class=HTMLResponse)
async def dashboard(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    definitions: DefinitionsDep,
    facilitator: MaybeFacilitator,
) -> Response:
    if facilitator is None:
        return RedirectResponse("/signin", status_code=303)
    return await _dashboard(request, session, settings, definitions, facilitator)


@router.post("/dashboard/workshops", response_class=HTMLResponse)
async def dashboard_create(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    definitions: DefinitionsDep,
    facilitator: MaybeFacilitator,
    title: Annotated[str, Form(max_length=400)] = "",
    definition: Annotated[str, Form(max_length=64)] = "",
    functions: Annotated[list[str] | None, Form(max_length=200)] = None,
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    if facilitator is None:
        return RedirectResponse("/signin", status_code=303)
    check_csrf(request, csrf_token)
    chosen = definitions.get(definition)
    if chosen is None:
        return await _dashboard(
            request,
            session,
            settings,
            definitions,
            facilitator,
            error="Choose one of the listed definitions.",
            status_code=422,
        )
    try:
        # The form lists every definition's functions as "definition:function".
        picked = None
        if functions is not None:
            prefix = f"{chosen.id}:"
            picked = [f.removeprefix(prefix) for f in functions if f.startswith(prefix)]
        await workshop_service.create_workshop(
            session,
            facilitator_id=facilitator.id,
            definition=chosen,
            title=title,
            functions=picked,
        )
    except ServiceError as exc:
        return await _dashboard(
            request,
            session,
            settings,
            definitions,
            facilitator,
            error=f"Could not create the workshop: {exc.message}.",
            status_code=exc.status_code,
        )
    return RedirectResponse("/dashboard", status_code=303)


@router.post("/dashboard/import", response_class=HTMLResponse)
async def dashboard_import(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    definitions: DefinitionsDep,
    facilitator: MaybeFacilitator,
    export: Annotated[UploadFile | None, File()] = None,
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    """Recreate a workshop from its JSON export (the same import as the API's)."""
    if facilitator is None:
        return RedirectResponse("/signin", status_code=303)
    check_csrf(request, csrf_token)
    try:
        if export is None or not export.filename:
            raise ImportRejected(["choose a JSON export file"])
        data = parse_export(await export.read(MAX_IMPORT_BYTES + 1), "the file")
        await importer.import_workshop(session, data, facilitator.id)
    except ImportRejected as exc:
        shown = "; ".join(exc.problems[:5]) + (" …" if len(exc.problems) > 5 else "")
        return await _dashboard(
            request,
            session,
            settings,
            definitions,
            facilitator,
            error=f"Could not import it: {shown}.",
            status_code=exc.status_code,
        )
    return RedirectResponse("/dashboard", status_code=303)
