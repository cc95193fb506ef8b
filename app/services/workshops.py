"""Creating workshops, joining them, and reading their score."""

from __future__ import annotations

import re
import secrets
import unicodedata
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.db.models import Participant, Workshop
from app.domain.definitions import (
    Definition,
    DefinitionError,
    definition_from_snapshot,
    definition_to_snapshot,
)
from app.services.errors import Conflict, Forbidden, Invalid, NotFound
from app.services.events import append_event

# No 0/O, 1/I/L: codes are read aloud and typed on phones.
JOIN_CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
JOIN_CODE_LENGTH = 6
MAX_TITLE = 200
MAX_NAME = 60


def new_join_code() -> str:
    return "".join(secrets.choice(JOIN_CODE_ALPHABET) for _ in range(JOIN_CODE_LENGTH))


def normalise_join_code(code: str) -> str:
    return re.sub(r"[\s-]", "", code).upper()


def clean_text(value: str, *, field: str, max_length: int) -> str:
    """Trim, collapse whitespace, refuse control characters and empty values."""
    if any(unicodedata.category(ch) in {"Cc", "Cf"} for ch in value):
        raise Invalid(f"{field} contains control characters")
    value = " ".join(value.split())
    if not value:
        raise Invalid(f"{field} must not be empty")
    if len(value) > max_length:
        raise Invalid(f"{field} is {len(value)} characters long; the limit is {max_length}")
    return value


async def create_workshop(
    session: AsyncSession,
    *,
    facilitator_id: str,
    definition: Definition,
    title: str,
    anonymous: bool | None = None,
    functions: list[str] | None = None,
) -> Workshop:
    title = clean_text(title, field="title", max_length=MAX_TITLE)
    snapshot = definition_to_snapshot(choose_functions(definition, functions))
    for _attempt in range(8):
        workshop = Workshop(
            facilitator_id=facilitator_id,
            title=title,
            definition_id=definition.id,
            definition=snapshot,
            join_code=new_join_code(),
            anonymous=definition.settings.anonymous if anonymous is None else anonymous,
            dot_budget=definition.settings.dot_budget,
        )
        session.add(workshop)
        try:
            await session.flush()
        except IntegrityError:
            # Join code collision (about 1 in 10^8 per pair): draw again.
            await session.rollback()
            continue
        await append_event(
            session,
            workshop.id,
            "workshop.created",
            {"title": title, "definition_id": definition.id},
            f"facilitator:{facilitator_id}",
        )
        await session.commit()
        return workshop
    raise Conflict("could not allocate a join code; try again")


def choose_functions(definition: Definition, functions: list[str] | None) -> Definition:
    """The definition with only the chosen core functions, in the chosen order.

    A workshop rarely covers all five functions in one sitting: the facilitator picks
    which ones this session covers. None keeps them all, in the definition's order.
    """
    if functions is None:
        return definition
    known = {f.id: f for f in definition.functions}
    unknown = [f for f in functions if f not in known]
    if unknown:
        raise Invalid(
            f"no core function {', '.join(repr(f) for f in unknown)} in "
            f"'{definition.id}' (it has: {', '.join(known)})"
        )
    if len(set(functions)) != len(functions):
        raise Invalid("each core function may be chosen once")
    if not functions:
        raise Invalid("choose at least one core function")
    snapshot = definition_to_snapshot(definition)
    snapshot["functions"] = [known[f].model_dump(mode="json") for f in functions]
    try:
        return definition_from_snapshot(snapshot)
    except DefinitionError as exc:  # e.g. an agenda rule the subset breaks
        raise Invalid(f"these core functions do not make a valid workshop: {exc}") from exc


async def get_workshop(session: AsyncSession, workshop_id: str) -> Workshop:
    workshop = await session.get(Workshop, workshop_id)
    if workshop is None:
        raise NotFound("no such workshop")
    return workshop


async def owned_workshop(session: AsyncSession, workshop_id: str, facilitator_id: str) -> Workshop:
    workshop = await get_workshop(session, workshop_id)
    if workshop.facilitator_id != facilitator_id:
        # Same answer as a missing workshop: do not reveal other facilitators' ids.
        raise NotFound("no such workshop")
    return workshop


@dataclass(frozen=True)
class Joined:
    workshop: Workshop
    participant: Participant
    event: dict[str, Any]  # `participant.joined`, to publish now that it is committed


async def join_workshop(
    session: AsyncSession,
    *,
    workshop_id: str,
    join_code: str,
    display_name: str,
    organisation: str | None = None,
) -> Joined:
    workshop = await session.get(Workshop, workshop_id)
    if workshop is None or not secrets.compare_digest(
        normalise_join_code(join_code), workshop.join_code
    ):
        raise Forbidden("that join code does not open this workshop")
    if workshop.state == "ended":
        raise Conflict("this workshop has ended; ask the facilitator for the report")
    name = clean_text(display_name, field="display name", max_length=MAX_NAME)
    org = (
        clean_text(organisation, field="organisation", max_length=120)
        if organisation is not None and organisation.strip()
        else None
    )
    participant = Participant(
        workshop_id=workshop.id, display_name=name, name_key=name.casefold(), organisation=org
    )
    session.add(participant)
    try:
        await session.flush()
    except IntegrityError as exc:
        await session.rollback()
        raise Conflict(
            f"someone in this workshop already uses the name '{name}'; "
            "add an initial or your team, e.g. 'Sam L. (Passports)'"
        ) from exc
    payload = {"participant": {"id": participant.id, "display_name": name, "organisation": org}}
    event = await append_event(
        session, workshop.id, "participant.joined", payload, f"participant:{participant.id}"
    )
    await session.commit()
    message = {
        "type": "participant.joined",
        "seq": event.seq,
        "actor": participant.id,
        "at": event.created_at.isoformat(),
        "cid": None,
        "ts": None,
        **payload,
    }
    return Joined(workshop=workshop, participant=participant, event=message)


async def active_participant(
    session: AsyncSession, workshop_id: str, participant_id: str
) -> Participant | None:
    found = (
        await session.exec(
            select(Participant).where(
                Participant.id == participant_id, Participant.workshop_id == workshop_id
            )
        )
    ).first()
    if found is None or found.removed_at is not None:
        return None
    return found
