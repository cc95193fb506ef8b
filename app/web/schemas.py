"""Request and response bodies of the JSON API (they make the OpenAPI schema)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.db.models import Workshop


class _In(BaseModel):
    # Strict, as the live protocol: 0 is not false and 1 is not "1".
    model_config = ConfigDict(extra="forbid", strict=True)


class ErrorOut(BaseModel):
    detail: str = Field(description="What went wrong, in words a person understands")
    code: str = Field(description="Stable machine-readable error code")


class ValidationIssue(BaseModel):
    loc: list[str | int] = Field(description="Where: 'body', 'query' or 'path', then the field")
    msg: str
    type: str


class ValidationErrorOut(BaseModel):
    """FastAPI's answer to a malformed request: one entry per field that is wrong."""

    detail: list[ValidationIssue]


class ImportErrorOut(ErrorOut):
    problems: list[str] = Field(description="Every problem found (at most 50)")


_WHY: dict[int, str] = {
    400: "The body is not valid JSON",
    401: "Not signed in: no valid bearer token or session cookie",
    403: "Forbidden",
    404: "No such workshop, or not one of yours",
    409: "Conflicts with the current state",
    422: "Malformed (a field-by-field list) or refused as invalid (`code` says why)",
    429: "Too many attempts; wait for `Retry-After` seconds",
    503: "The database cannot be reached just now; nothing was saved, try again",
}


def error_responses(*statuses: int, **why: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for the error statuses a route can answer with.

    `why` overrides a description by status (`s409="Name taken"`). A 422 may be either
    a validation list or a service refusal, so it documents both bodies.
    """
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        model: Any = ValidationErrorOut | ErrorOut if status == 422 else ErrorOut
        out[status] = {"model": model, "description": why.get(f"s{status}", _WHY[status])}
    return out


class TokenIn(_In):
    email: str = Field(max_length=254, examples=["facilitator@agency.gov"])
    password: str = Field(max_length=1024)


class TokenOut(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the scheme name
    expires_in: int = Field(description="Seconds until the token expires")


class LevelOut(BaseModel):
    id: str
    name: str


class FunctionOut(BaseModel):
    id: str
    name: str
    cards: int


class DefinitionOut(BaseModel):
    id: str
    title: str
    description: str
    scale: list[LevelOut]
    functions: list[FunctionOut]
    phases: int


class WorkshopCreate(_In):
    definition: str = Field(max_length=64, examples=["dhs-cx-maturity"])
    title: str = Field(min_length=1, max_length=200, examples=["Passport Services CX workshop"])
    anonymous: bool | None = Field(
        default=None, description="Hide names from other participants; default from the definition"
    )
    functions: list[Annotated[str, Field(max_length=64)]] | None = Field(
        default=None,
        max_length=12,
        description="The core functions this workshop covers, in this order (ids from the "
        "definition); default: all of them, in the definition's order",
        examples=[["measurement", "customer-understanding"]],
    )


class WorkshopOut(BaseModel):
    id: str
    title: str
    definition_id: str
    state: str
    join_code: str
    join_url: str
    anonymous: bool
    participants: int
    functions: list[str] = Field(description="The core functions it covers, in agenda order")
    created_at: datetime

    @classmethod
    def of(cls, workshop: Workshop, public_url: str, participants: int) -> WorkshopOut:
        return cls(
            id=workshop.id,
            title=workshop.title,
            definition_id=workshop.definition_id,
            state=workshop.state,
            join_code=workshop.join_code,
            join_url=f"{public_url}/join/{workshop.join_code}",
            anonymous=workshop.anonymous,
            participants=participants,
            functions=[f["id"] for f in workshop.definition.get("functions", [])],
            created_at=workshop.created_at,
        )


class ParticipantCreate(_In):
    join_code: str = Field(max_length=32, examples=["K7P2QX"])
    display_name: str = Field(min_length=1, max_length=60, examples=["Sam L."])
    organisation: str | None = Field(default=None, max_length=120, examples=["Passport Services"])


class ParticipantOut(BaseModel):
    participant_id: str
    workshop_id: str
    display_name: str
    token: str = Field(description="Signed token for this workshop only; keep it to come back")


class HealthOut(BaseModel):
    status: Literal["ok"]


ScoreOut = dict[str, Any]
