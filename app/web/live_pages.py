"""Pages of a live workshop: join, participant view, facilitator console, projector.

Each page is rendered whole on load and then kept current over the WebSocket
(`format=html`): small changes arrive as out-of-band fragments; a change of phase or
a reveal makes the page fetch its `stage` region again over HTTP.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel import select

from app.db.models import Participant, Workshop
from app.realtime.messages import Audience
from app.services import workshops as workshop_service
from app.services.errors import ServiceError
from app.services.identity import (
    participant_cookie,
    participant_from_token,
    projector_allowed,
    projector_cookie,
    projector_token,
)
from app.services.security import PARTICIPANT
from app.web.csrf import check_csrf
from app.web.deps import (
    CodecDep,
    MaybeFacilitator,
    SessionDep,
    SettingsDep,
    set_private_cookie,
)
from app.web.pages import render
from app.web.ratelimit import client_address
from app.web.room_view import room_view

router = APIRouter(include_in_schema=False)


async def _workshop_by_code(session: SessionDep, code: str) -> Workshop | None:
    normalised = workshop_service.normalise_join_code(code)
    return (await session.exec(select(Workshop).where(Workshop.join_code == normalised))).first()


async def _me(
    request: Request, session: SessionDep, codec: CodecDep, settings: SettingsDep, wid: str
) -> Participant | None:
    token = request.cookies.get(participant_cookie(wid))
    if not token:
        return None
    return await participant_from_token(session, codec, settings, wid, token)


def _set_participant_cookie(response: Response, settings: Any, wid: str, token: str) -> None:
    set_private_cookie(
        response, settings, participant_cookie(wid), token, settings.participant_token_days * 86400
    )


@router.get("/join", response_class=HTMLResponse)
async def join_form(request: Request, code: str = "") -> Response:
    return render(
        request,
        "live/join.html",
        {
            "code": code,
            "workshop": None,
            "error": None,
            "name": "",
            "organisation": "",
            "facilitator": None,
        },
    )


@router.get("/join/{code}", response_class=HTMLResponse)
async def join_with_code(
    request: Request, code: str, session: SessionDep, codec: CodecDep, settings: SettingsDep
) -> Response:
    limiter = request.app.state.join_limiter
    address = client_address(request)
    if await limiter.blocked(address):
        return render(
            request,
            "live/join.html",
            {
                "code": "",
                "workshop": None,
                "name": "",
                "organisation": "",
                "facilitator": None,
                "error": "Too many attempts with a wrong code. Wait a few minutes and try again.",
            },
            status_code=429,
        )
    workshop = await _workshop_by_code(session, code)
    if workshop is None:
        await limiter.failed(address)
    if workshop is not None and await _me(request, session, codec, settings, workshop.id):
        return RedirectResponse(f"/w/{workshop.id}", status_code=303)
    error = None if workshop else "No workshop has that code. Check it with your facilitator."
    return render(
        request,
        "live/join.html",
        {
            "code": code,
            "workshop": workshop,
            "error": error,
            "name": "",
            "organisation": "",
            "facilitator": None,
        },
        status_code=200 if workshop else 404,
    )


@router.post("/join", response_class=HTMLResponse)
async def join(
    request: Request,
    session: SessionDep,
    codec: CodecDep,
    settings: SettingsDep,
    code: Annotated[str, Form(max_length=32)] = "",
    display_name: Annotated[str, Form(max_length=200)] = "",
    organisation: Annotated[str, Form(max_length=200)] = "",
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    check_csrf(request, csrf_token)
    limiter = request.app.state.join_limiter
    address = client_address(request)
    if await limiter.blocked(address):
        return render(
            request,
            "live/join.html",
            {
                "code": code,
                "workshop": None,
                "name": display_name,
                "organisation": organisation,
                "facilitator": None,
                "error": "Too many attempts with a wrong code. Wait a few minutes and try again.",
            },
            status_code=429,
        )
    workshop = await _workshop_by_code(session, code)
    if workshop is None:
        await limiter.failed(address)
    context = {
        "code": code,
        "workshop": workshop,
        "name": display_name,
        "organisation": organisation,
        "facilitator": None,
    }
    if workshop is None:
        return render(
            request,
            "live/join.html",
            {**context, "error": "No workshop has that code. Check it with your facilitator."},
            status_code=404,
        )
    try:
        joined = await workshop_service.join_workshop(
            session,
            workshop_id=workshop.id,
            join_code=code,
            display_name=display_name,
            organisation=organisation or None,
        )
    except ServiceError as exc:
        # A refused join rolled back, which expires the workshop the page shows: load
        # it again here, not lazily inside the template (no I/O there).
        await session.refresh(workshop)
        message = exc.message[0].upper() + exc.message[1:] + "."
        return render(
            request, "live/join.html", {**context, "error": message}, status_code=exc.status_code
        )
    await request.app.state.live.publish(workshop.id, joined.event)
    token = codec.dumps(PARTICIPANT, {"w": workshop.id, "p": joined.participant.id})
    response = RedirectResponse(f"/w/{workshop.id}", status_code=303)
    _set_participant_cookie(response, settings, workshop.id, token)
    return response


@router.get("/w/{wid}/rejoin")
async def rejoin(
    wid: str, t: str, session: SessionDep, codec: CodecDep, settings: SettingsDep
) -> Response:
    """A participant's personal link: the same identity on another device."""
    participant = await participant_from_token(session, codec, settings, wid, t)
    if participant is None:
        return RedirectResponse("/join", status_code=303)
    response = RedirectResponse(f"/w/{wid}", status_code=303)
    _set_participant_cookie(response, settings, wid, t)
    return response


def _outline(request: Request, template: str) -> bool:
    return template.endswith("outline.html") or request.query_params.get("view") == "outline"


async def _participant_page(
    request: Request,
    wid: str,
    session: SessionDep,
    codec: CodecDep,
    settings: SettingsDep,
    template: str,
) -> Response:
    me = await _me(request, session, codec, settings, wid)
    workshop = await session.get(Workshop, wid)
    if me is None or workshop is None:
        return RedirectResponse("/join", status_code=303)
    await session.close()  # its connection goes back before room_view takes one
    view = await room_view(request, workshop, "participant", me.id)
    token = request.cookies.get(participant_cookie(wid), "")
    outline = _outline(request, template)
    return render(
        request,
        template,
        {
            **view,
            "facilitator": None,
            "my_name": me.display_name,
            "outline": outline,
            "stage_url": f"/w/{wid}/stage" + ("?view=outline" if outline else ""),
            "page_url": f"/w/{wid}",
            "rejoin_url": f"{settings.public_url}/w/{wid}/rejoin?t={token}",
        },
    )


@router.get("/w/{wid}", response_class=HTMLResponse)
async def participant_page(
    request: Request, wid: str, session: SessionDep, codec: CodecDep, settings: SettingsDep
) -> Response:
    return await _participant_page(request, wid, session, codec, settings, "live/room.html")


@router.get("/w/{wid}/stage", response_class=HTMLResponse)
async def participant_stage(
    request: Request, wid: str, session: SessionDep, codec: CodecDep, settings: SettingsDep
) -> Response:
    return await _participant_page(request, wid, session, codec, settings, "live/stage.html")


@router.get("/w/{wid}/outline", response_class=HTMLResponse)
async def participant_outline(
    request: Request, wid: str, session: SessionDep, codec: CodecDep, settings: SettingsDep
) -> Response:
    return await _participant_page(request, wid, session, codec, settings, "live/outline.html")


async def _facilitator_page(
    request: Request,
    wid: str,
    session: SessionDep,
    facilitator: MaybeFacilitator,
    audience: Audience,
    template: str,
    base: str,
) -> Response:
    settings = request.app.state.settings
    codec = request.app.state.codec
    shared_screen = (
        audience == "projector"
        and facilitator is None
        and projector_allowed(codec, settings, wid, request.cookies.get(projector_cookie(wid), ""))
    )
    if facilitator is None and not shared_screen:
        return RedirectResponse("/signin", status_code=303)
    workshop = await session.get(Workshop, wid)
    if workshop is None or (facilitator is not None and workshop.facilitator_id != facilitator.id):
        return render(request, "live/missing.html", {"facilitator": facilitator}, status_code=404)
    await session.close()  # its connection goes back before room_view takes one
    view = await room_view(request, workshop, audience, None)
    outline = _outline(request, template)
    return render(
        request,
        template,
        {
            **view,
            "facilitator": facilitator,
            "my_name": facilitator.display_name if facilitator else "",
            "outline": outline,
            "stage_url": f"/{base}/{wid}/stage" + ("?view=outline" if outline else ""),
            "page_url": f"/{base}/{wid}",
            "join_url": f"{settings.public_url}/join/{workshop.join_code}",
            "projector_link": (
                f"{settings.public_url}/projector/{wid}/open?k={projector_token(codec, wid)}"
                if audience == "facilitator"
                else None
            ),
        },
    )


@router.get("/console/{wid}", response_class=HTMLResponse)
async def console(
    request: Request, wid: str, session: SessionDep, facilitator: MaybeFacilitator
) -> Response:
    return await _facilitator_page(
        request, wid, session, facilitator, "facilitator", "live/room.html", "console"
    )


@router.get("/console/{wid}/stage", response_class=HTMLResponse)
async def console_stage(
    request: Request, wid: str, session: SessionDep, facilitator: MaybeFacilitator
) -> Response:
    return await _facilitator_page(
        request, wid, session, facilitator, "facilitator", "live/stage.html", "console"
    )


@router.get("/console/{wid}/outline", response_class=HTMLResponse)
async def console_outline(
    request: Request, wid: str, session: SessionDep, facilitator: MaybeFacilitator
) -> Response:
    return await _facilitator_page(
        request, wid, session, facilitator, "facilitator", "live/outline.html", "console"
    )


@router.get("/projector/{wid}", response_class=HTMLResponse)
async def projector(
    request: Request, wid: str, session: SessionDep, facilitator: MaybeFacilitator
) -> Response:
    return await _facilitator_page(
        request, wid, session, facilitator, "projector", "live/room.html", "projector"
    )


@router.get("/projector/{wid}/open", response_class=HTMLResponse)
async def projector_open(
    request: Request, wid: str, settings: SettingsDep, codec: CodecDep, k: str = ""
) -> Response:
    """A projector link: this browser shows the workshop's projector view, signed out."""
    if not projector_allowed(codec, settings, wid, k):
        return render(request, "live/missing.html", {"facilitator": None}, status_code=404)
    response = RedirectResponse(f"/projector/{wid}", status_code=303)
    set_private_cookie(
        response, settings, projector_cookie(wid), k, settings.participant_token_days * 86400
    )
    return response


@router.get("/projector/{wid}/stage", response_class=HTMLResponse)
async def projector_stage(
    request: Request, wid: str, session: SessionDep, facilitator: MaybeFacilitator
) -> Response:
    return await _facilitator_page(
        request, wid, session, facilitator, "projector", "live/stage.html", "projector"
    )
