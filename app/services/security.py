"""Passwords and signed tokens.

Passwords are hashed with argon2id. Tokens are itsdangerous signatures over small
JSON payloads, each kind with its own salt so one kind can never pass for another:
a participant token only opens the workshop it was issued for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

_hasher = PasswordHasher()
# A hash to verify against when the account does not exist, so that sign-in takes
# the same time whether or not the email is known.
_DUMMY_HASH = _hasher.hash("not a real password")

ACCESS = "facilitator-access"
SESSION = "facilitator-session"
PARTICIPANT = "participant"
PROJECTOR = "projector"  # read-only view of one workshop, for a shared screen


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password: str, password_hash: str | None) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and bool(password_hash)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


class InvalidToken(Exception):
    """The token is forged, of another kind, or expired."""


@dataclass(frozen=True)
class TokenCodec:
    secret_key: str

    def _serializer(self, kind: str) -> URLSafeTimedSerializer:
        return URLSafeTimedSerializer(self.secret_key, salt=f"cx-workshop/{kind}")

    def dumps(self, kind: str, payload: dict[str, Any]) -> str:
        return self._serializer(kind).dumps(payload)

    def loads(self, kind: str, token: str, *, max_age_s: int) -> dict[str, Any]:
        try:
            value = self._serializer(kind).loads(token, max_age=max_age_s)
        except SignatureExpired as exc:
            raise InvalidToken("expired") from exc
        except BadSignature as exc:
            raise InvalidToken("invalid") from exc
        if not isinstance(value, dict):
            raise InvalidToken("invalid")
        return value


def is_participant_token(codec: TokenCodec, token: str) -> bool:
    """Whether a token is a (well-signed, maybe expired) participant token."""
    try:
        codec.loads(PARTICIPANT, token, max_age_s=10**9)
    except InvalidToken:
        return False
    return True
