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
    with contextlib.suppress(InvalidToken):
        payload = codec.loads(PARTICIPANT, token, max_age_s=settings.participant_token_days * 86400)
        if payload.get("w") != workshop_id:
            return None
        participant = await session.get(Participant, str(payload.get("p")))
        if (
            participant is not None
            and participant.removed_at is None
            and participant.workshop_id == workshop_id
        ):
            return participant
    return None
