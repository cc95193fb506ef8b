"""Facilitator accounts: creation, sign-in, the development demo account."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.exc import IntegrityError
from sqlmodel import func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.db.models import Facilitator
from app.services.errors import Conflict, Invalid
from app.services.security import hash_password, verify_password

EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$")
MIN_PASSWORD_LENGTH = 10
DEMO_EMAIL = "demo@facilitator.test"


def normalise_email(email: str) -> str:
    return email.strip().lower()


async def create_facilitator(
    session: AsyncSession, email: str, password: str, display_name: str | None = None
) -> Facilitator:
    email = normalise_email(email)
    if not EMAIL_RE.match(email) or len(email) > 254:
        raise Invalid(f"'{email}' is not an email address")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise Invalid(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    name = (display_name or email.split("@", 1)[0]).strip()[:120]
    facilitator = Facilitator(email=email, display_name=name, password_hash=hash_password(password))
    session.add(facilitator)
    try:
        await session.commit()
    except IntegrityError as exc:
        await session.rollback()
        raise Conflict(f"a facilitator with the email {email} already exists") from exc
    return facilitator


async def authenticate(session: AsyncSession, email: str, password: str) -> Facilitator | None:
    found = (
        await session.exec(select(Facilitator).where(Facilitator.email == normalise_email(email)))
    ).first()
    ok = verify_password(password, found.password_hash if found else None)
    return found if ok else None


@dataclass(frozen=True)
class DemoAccount:
    email: str
    password: str | None  # None: the account exists but its password was not kept here
    created: bool


async def ensure_demo_facilitator(session: AsyncSession, credentials_file: Path) -> DemoAccount:
    """Development only: make sure a facilitator exists and say how to sign in.

    The generated password is kept in `credentials_file` (under ./data, which is
    never committed) so that every `make run` can print it again.
    """
    count = (await session.exec(select(func.count()).select_from(Facilitator))).one()
    demo = (await session.exec(select(Facilitator).where(Facilitator.email == DEMO_EMAIL))).first()
    if demo is None and count:
        return DemoAccount(email="", password=None, created=False)
    if demo is not None:
        return DemoAccount(email=DEMO_EMAIL, password=_read_kept(credentials_file), created=False)
    password = secrets.token_urlsafe(12)
    await create_facilitator(session, DEMO_EMAIL, password, "Demo Facilitator")
    _keep(credentials_file, password)
    return DemoAccount(email=DEMO_EMAIL, password=password, created=True)


# Small local files read once at start-up: blocking I/O is fine here.
def _read_kept(path: Path) -> str | None:
    return path.read_text(encoding="utf-8").strip() or None if path.exists() else None


def _keep(path: Path, value: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(value + "\n", encoding="utf-8")
    path.chmod(0o600)
