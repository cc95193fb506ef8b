"""Outcome routes: exports, import, comparison, and the summary and comparison pages.

Thin: parse, call :mod:`app.exports.service` or the importer, render. Only the workshop's
own facilitator gets anything (others see 404, as everywhere); the API answers 401 to a
visitor who is not signed in, the pages send them to the sign-in page.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from sqlmodel import col, select

from app.db.models import Facilitator, Workshop
from app.exports import importer
from app.exports.checks import ImportRejected
from app.exports.compare import Comparison, render_csv
from app.exports.csv_export import TABLES
from app.exports.pdf import PdfRenderer, WeasyPrintRenderer
from app.exports.radar import render_svg
from app.exports.report import agreement_text, build
from app.exports.service import (
    MAX_COMPARED,
    comparison_for,
    download,
    outcome_for,
    parse_format,
)
from app.services.errors import NotFound, ServiceError
from app.web.csrf import csrf_token, set_csrf_cookie
from app.web.deps import CurrentFacilitator, MaybeFacilitator, SessionDep, SettingsDep
from app.web.schemas import ImportErrorOut, WorkshopOut, error_responses
from app.web.templating import TEMPLATES_DIR

router = APIRouter()

MAX_IMPORT_BYTES = 20 * 1024 * 1024
STYLESHEET = TEMPLATES_DIR / "exports" / "exports.css"
ERRORS = error_responses(401, 404, 422, 503, s422="Malformed, or an unknown format or table")
FORMATS = ["json", "csv", "markdown", "md", "pdf"]
DOWNLOAD: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The export as a file download",
        "content": {
            media: {"schema": {}}
            for media in (
                "application/json",
                "application/zip",
                "text/csv",
                "text/markdown",
                "application/pdf",
            )
        },
    }
}


@cache
def _weasyprint() -> PdfRenderer:
    return WeasyPrintRenderer()


def get_pdf_renderer() -> PdfRenderer:
    """The PDF seam: tests override this dependency to print without WeasyPrint."""
    return _weasyprint()


PdfRendererDep = Annotated[PdfRenderer, Depends(get_pdf_renderer)]
# The pages take no ids too (they show the picker); the API documents 1 to 30.
WorkshopIds = Annotated[list[str] | None, Query(alias="workshop", max_length=64)]
ApiWorkshopIds = Annotated[
    list[str] | None,
    Query(
        alias="workshop",
        max_length=64,
        description="Workshop ids to compare, 1 to 30 (duplicates are ignored)",
        json_schema_extra={
            "minItems": 1,
            "maxItems": MAX_COMPARED,
            "items": {"type": "string", "maxLength": 64},
        },
    ),
]


def _attachment(content: bytes, media_type: str, filename: str) -> Response:
    return Response(
        content,
        media_type=media_type,
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            # Outcomes can hold names and candid notes: keep them out of shared caches.
            "Cache-Control": "private, no-store",
        },
    )


@router.get(
    "/api/workshops/{workshop_id}/export",
    tags=["exports"],
    responses={**ERRORS, **DOWNLOAD},
)
async def export_workshop(
    workshop_id: str,
    facilitator: CurrentFacilitator,
    session: SessionDep,
    renderer: PdfRendererDep,
    format: Annotated[
        str,
        Query(
            max_length=20,
            description="json, csv, markdown (md) or pdf",
            json_schema_extra={"enum": FORMATS},
        ),
    ] = "json",
    table: Annotated[
        str | None,
        Query(
            max_length=40,
            description="with format=csv: one table, not the zip",
            json_schema_extra={"enum": [*TABLES, None]},
        ),
    ] = None,
) -> Response:
    outcome = await outcome_for(session, workshop_id, facilitator.id)
    file = await download(outcome, parse_format(format), renderer, table)
    return _attachment(file.content, file.media_type, file.filename)


def parse_export(body: bytes | bytearray, what: str = "the body") -> Any:
    """An uploaded export's JSON, or ImportRejected (too large, or not JSON)."""
    if len(body) > MAX_IMPORT_BYTES:
        raise ImportRejected([f"{what} is larger than {MAX_IMPORT_BYTES} bytes"])
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise ImportRejected([f"{what} is not a JSON export: {str(exc)[:120]}"]) from exc


async def _read_json(request: Request) -> Any:
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise ImportRejected(["send the export with Content-Type: application/json"])
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_IMPORT_BYTES:
            break  # refused below, without reading the rest
    return parse_export(body)


@router.post(
    "/api/workshops/import",
    status_code=201,
    response_model=WorkshopOut,
    tags=["exports"],
    responses={
        **error_responses(401, 409, 503, s409="No free join code could be drawn; try again"),
        422: {"model": ImportErrorOut, "description": "Not a valid export; `problems` lists why"},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "A JSON export (docs/export.schema.json)",
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    },
)
async def import_workshop(
    request: Request, facilitator: CurrentFacilitator, session: SessionDep, settings: SettingsDep
) -> Response:
    try:
        data = await _read_json(request)
        workshop = await importer.import_workshop(session, data, facilitator.id)
    except ImportRejected as exc:
        body = {"detail": exc.message, "code": exc.code, "problems": exc.problems}
        return JSONResponse(body, status_code=exc.status_code)
    participants = sum(1 for p in data["participants"] if not p["removed"])
    out = WorkshopOut.of(workshop, settings.public_url, participants)
    return JSONResponse(out.model_dump(mode="json"), status_code=201)


@router.get(
    "/api/compare",
    tags=["exports"],
    response_model=dict[str, Any],
    responses={
        **error_responses(
            401, 404, 422, 503, s422="Malformed, or no workshop or more than 30 chosen"
        ),
        200: {
            "description": "The comparison (JSON, or CSV with format=csv)",
            "content": {"application/json": {"schema": {}}, "text/csv": {"schema": {}}},
        },
    },
)
async def compare_api(
    facilitator: CurrentFacilitator,
    session: SessionDep,
    workshop_ids: ApiWorkshopIds = None,
    format: Literal["json", "csv"] = "json",
) -> Response:
    comparison = await comparison_for(session, workshop_ids or [], facilitator.id)
    if format == "csv":
        return _attachment(render_csv(comparison), "text/csv; charset=utf-8", "comparison.csv")
    return JSONResponse(comparison.to_dict())


# --- pages -------------------------------------------------------------------------------


def _page(
    request: Request, name: str, context: dict[str, Any], *, status_code: int = 200
) -> Response:
    context = {"csrf_token": csrf_token(request), "agreement_text": agreement_text, **context}
    response: Response = request.app.state.templates.TemplateResponse(
        request, name, context, status_code=status_code
    )
    set_csrf_cookie(request, response, secure=request.app.state.settings.secure_cookies)
    return response


def _missing(request: Request, facilitator: Facilitator, error: ServiceError) -> Response:
    return _page(
        request,
        "exports/missing.html",
        {"facilitator": facilitator, "message": error.message},
        status_code=error.status_code,
    )


@router.get(
    "/workshops/{workshop_id}/summary", response_class=HTMLResponse, include_in_schema=False
)
async def summary_page(
    request: Request, workshop_id: str, facilitator: MaybeFacilitator, session: SessionDep
) -> Response:
    if facilitator is None:
        return RedirectResponse("/signin", status_code=303)
    try:
        outcome = await outcome_for(session, workshop_id, facilitator.id)
    except NotFound as exc:
        return _missing(request, facilitator, exc)
    report = build(outcome)
    return _page(
        request,
        "exports/summary.html",
        {
            "facilitator": facilitator,
            "workshop_id": workshop_id,
            "report": report,
            "radar": render_svg(report),
            "tables": list(TABLES),
        },
    )


@router.get("/compare", response_class=HTMLResponse, include_in_schema=False)
async def compare_page(
    request: Request,
    facilitator: MaybeFacilitator,
    session: SessionDep,
    workshop_ids: WorkshopIds = None,
) -> Response:
    if facilitator is None:
        return RedirectResponse("/signin", status_code=303)
    comparison: Comparison | None = None
    try:
        if workshop_ids:
            comparison = await comparison_for(session, workshop_ids, facilitator.id)
    except ServiceError as exc:
        return _missing(request, facilitator, exc)
    mine = (
        await session.exec(
            select(Workshop)
            .where(Workshop.facilitator_id == facilitator.id)
            .order_by(col(Workshop.created_at).desc())
        )
    ).all()
    query = "&".join(f"workshop={w.id}" for w in comparison.workshops) if comparison else ""
    return _page(
        request,
        "exports/compare.html",
        {
            "facilitator": facilitator,
            "workshops": mine,
            "selected": set(workshop_ids or ()),
            "comparison": comparison,
            "csv_query": query,
        },
    )


@cache
def _stylesheet() -> bytes:
    return Path(STYLESHEET).read_bytes()


@router.get("/exports/exports.css", include_in_schema=False)
async def stylesheet() -> Response:
    # Served from here because these pages may not add to the shared static files.
    return Response(_stylesheet(), media_type="text/css", headers={"Cache-Control": "max-age=3600"})
