"""What the export routes call: read an outcome or a comparison, render a format.

Authorization is the caller's facilitator id: another facilitator's workshop is "not
found", exactly as for every other workshop route (`owned_workshop`).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from enum import StrEnum

from sqlmodel import func, select
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.concurrency import run_in_threadpool

from app.db.models import Participant
from app.domain.definitions import definition_from_snapshot
from app.exports import csv_export, json_export, markdown, pdf
from app.exports.compare import ComparedWorkshop, Comparison, compare
from app.exports.document import Scores
from app.exports.outcome import Outcome, gather
from app.services.errors import Invalid
from app.services.scores import workshop_score
from app.services.workshops import owned_workshop

MAX_COMPARED = 30


class Format(StrEnum):
    JSON = "json"
    CSV = "csv"
    MARKDOWN = "markdown"
    PDF = "pdf"


FORMAT_ALIASES = {"md": Format.MARKDOWN}


@dataclass(frozen=True)
class Download:
    content: bytes
    media_type: str
    filename: str


def parse_format(value: str) -> Format:
    value = value.lower()
    if value in FORMAT_ALIASES:
        return FORMAT_ALIASES[value]
    try:
        return Format(value)
    except ValueError:
        known = ", ".join(f.value for f in Format)
        raise Invalid(f"unknown format '{value[:20]}' (choose one of: {known})") from None


def file_stem(title: str, when: str) -> str:
    """An ASCII file name: a header value must not carry quotes, slashes or newlines."""
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_title.lower()).strip("-")[:60] or "workshop"
    return f"{slug}-{when}"


async def outcome_for(session: AsyncSession, workshop_id: str, facilitator_id: str) -> Outcome:
    workshop = await owned_workshop(session, workshop_id, facilitator_id)
    return await gather(session, workshop)


async def download(
    outcome: Outcome, fmt: Format, renderer: pdf.PdfRenderer, table: str | None = None
) -> Download:
    info = outcome.document.workshop
    when = (info.ended_at or info.started_at or info.created_at).strftime("%Y-%m-%d")
    stem = file_stem(info.title, when)
    if table is not None and fmt is not Format.CSV:
        raise Invalid("'table' applies only to format=csv")
    if fmt is Format.JSON:
        return Download(json_export.render(outcome), json_export.MEDIA_TYPE, f"{stem}.json")
    if fmt is Format.MARKDOWN:
        return Download(markdown.render(outcome), markdown.MEDIA_TYPE, f"{stem}.md")
    if fmt is Format.PDF:
        # WeasyPrint is CPU-bound and synchronous: keep it off the event loop.
        content = await run_in_threadpool(pdf.render, outcome, renderer)
        return Download(content, pdf.MEDIA_TYPE, f"{stem}.pdf")
    if table is None:
        return Download(csv_export.render(outcome), csv_export.ZIP_MEDIA_TYPE, f"{stem}-csv.zip")
    if table not in csv_export.TABLES:
        known = ", ".join(csv_export.TABLES)
        raise Invalid(f"unknown table '{table[:40]}' (choose one of: {known})")
    content = csv_export.render_table(outcome, table)
    return Download(content, csv_export.CSV_MEDIA_TYPE, f"{stem}-{table}.csv")


async def comparison_for(
    session: AsyncSession, workshop_ids: list[str], facilitator_id: str
) -> Comparison:
    ids = list(dict.fromkeys(workshop_ids))
    if not ids:
        raise Invalid("choose at least one workshop: ?workshop=<id>&workshop=<id>")
    if len(ids) > MAX_COMPARED:
        raise Invalid(f"compare at most {MAX_COMPARED} workshops at a time")
    compared: list[ComparedWorkshop] = []
    for workshop_id in ids:
        workshop = await owned_workshop(session, workshop_id, facilitator_id)
        definition = definition_from_snapshot(workshop.definition)
        count = (
            await session.exec(
                select(func.count())
                .select_from(Participant)
                .where(Participant.workshop_id == workshop.id, Participant.removed_at == None)  # noqa: E711
            )
        ).one()
        compared.append(
            ComparedWorkshop(
                id=workshop.id,
                title=workshop.title,
                date=workshop.ended_at or workshop.started_at or workshop.created_at,
                definition_id=workshop.definition_id,
                scale=definition.level_names,
                participants=int(count),
                scores=Scores.model_validate(await workshop_score(session, workshop)),
            )
        )
    return compare(compared)
