"""Who a participant is: a signed token bound to one workshop, checked against the DB."""

from __future__ import annotations

import contextlib

from sqlmodel.ext.asyncio.session import AsyncSession

from app.config import Settings
from app.db.models import Participant
from app.services.security import PARTICIPANT, PROJECTOR, InvalidToken, TokenCodec


def participant_cookie(workshop_id: str) -> str:
    """Browsers keep one participant cookie per workshop, so one person can be in two."""
    return f"cxw_p_{workshop_id}"


def projector_cookie(workshop_id: str) -> str:
    """A shared screen's cookie: it shows one workshop as the projector view, nothing more."""
    return f"cxw_j_{workshop_id}"


def projector_token(codec: TokenCodec, workshop_id: str) -> str:
    return codec.dumps(PROJECTOR, {"w": workshop_id})


def projector_allowed(codec: TokenCodec, settings: Settings, workshop_id: str, token: str) -> bool:
    """Whether `token` is a projector link for this workshop (signed, not expired)."""
    if not token:
        return False
    with contextlib.suppress(InvalidToken):
        payload = codec.loads(PROJECTOR, token, max_age_s=settings.participant_token_days * 86400)
        return payload.get("w") == workshop_id
    return False


async def participant_from_token(
    session: AsyncSession, codec: TokenCodec, settings: Settings, workshop_id: str, token: str
) -> Participant | None:
    """The active participant the token was issued to, for this workshop only."""
    claimed = participant_claim(codec, settings, workshop_id, token)
    if claimed is None:
        return None
    return await active_participant(session, workshop_id, claimed)


async def active_participant(
    session: AsyncSession, workshop_id: str, participant_id: str
) -> Participant | None:
    """The participant if they are in this workshop and not removed."""
    participant = await session.get(Participant, participant_id)
    if (
        participant is not None
        and participant.removed_at is None
        and participant.workshop_id == workshop_id
    ):
        return participant
    return None


def participant_claim(
    codec: TokenCodec, settings: Settings, workshop_id: str, token: str
) -> str | None:
    """The participant a signed, unexpired token names for this workshop (whether they
    are still in it is for the database to say); None if it names none."""
    with contextlib.suppress(InvalidToken):
        payload = codec.loads(PARTICIPANT, token, max_age_s=settings.participant_token_days * 86400)
        if payload.get("w") == workshop_id:
            return str(payload.get("p"))
    return None
