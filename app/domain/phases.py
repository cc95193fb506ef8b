"""The agenda part of a workshop definition: phase kinds, phase specs and their expansion.

A definition lists its agenda as ``phases``: whole-room phases (lobby, info, summary) and
``for_each_function`` blocks whose phases run once per core function. :func:`expand_phases`
turns that into the flat, ordered list of :class:`Phase` the facilitator steps through.

This module also holds the small constrained field types shared with
:mod:`app.domain.definitions` (which builds on this module, never the reverse).
See ``docs/definitions.md`` for the format reference.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, NamedTuple

from pydantic import BaseModel, ConfigDict, Discriminator, Field, StringConstraints, Tag

if TYPE_CHECKING:
    from app.domain.definitions import Definition

SLUG_PATTERN = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"

Slug = Annotated[str, StringConstraints(pattern=SLUG_PATTERN, max_length=64)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=80)]
Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=120)]
Text = Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000)]
Minutes = Annotated[int, Field(strict=True, ge=1, le=240)]
DotBudget = Annotated[int, Field(strict=True, ge=1, le=50)]


class FrozenModel(BaseModel):
    """Base for every definition model: immutable, and unknown fields are errors."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class PhaseKind(StrEnum):
    LOBBY = "lobby"
    INFO = "info"
    SORT = "sort"
    DISCUSS = "discuss"
    LEVEL_VOTE = "level_vote"
    REFLECT = "reflect"
    PRIORITISE = "prioritise"
    SUMMARY = "summary"


#: Kinds that run once per core function: only allowed inside ``for_each_function``.
PER_FUNCTION_KINDS = frozenset(
    {
        PhaseKind.SORT,
        PhaseKind.DISCUSS,
        PhaseKind.LEVEL_VOTE,
        PhaseKind.REFLECT,
        PhaseKind.PRIORITISE,
    }
)
#: Kinds for the whole workshop: only allowed at the top level of ``phases``.
WHOLE_ROOM_KINDS = frozenset({PhaseKind.LOBBY, PhaseKind.SUMMARY})
#: Kinds that need cards in every core function.
CARD_KINDS = frozenset({PhaseKind.SORT, PhaseKind.DISCUSS})
#: A phase kind that needs an earlier phase of another kind for the same function.
PREREQUISITES = {PhaseKind.DISCUSS: PhaseKind.SORT, PhaseKind.PRIORITISE: PhaseKind.REFLECT}

DEFAULT_TITLES: dict[PhaseKind, str] = {
    PhaseKind.LOBBY: "Lobby",
    PhaseKind.INFO: "Information",
    PhaseKind.SORT: "Sort the cards",
    PhaseKind.DISCUSS: "Reveal and discuss",
    PhaseKind.LEVEL_VOTE: "Vote on the level",
    PhaseKind.REFLECT: "Reflect",
    PhaseKind.PRIORITISE: "Prioritise",
    PhaseKind.SUMMARY: "Summary",
}


class PhaseSpec(FrozenModel):
    """One phase as written in the definition."""

    kind: PhaseKind
    title: Title | None = None
    minutes: Minutes | None = None
    text: Text | None = None
    dot_budget: DotBudget | None = None
    area: Slug | None = None


class ForEachFunction(FrozenModel):
    """A block of phases repeated for every core function, in the definition's order."""

    for_each_function: tuple[PhaseSpec, ...] = Field(min_length=1, max_length=20)


# The union tags appear in pydantic error locations (and are dropped from problem paths);
# the angle brackets keep them apart from field names.
PHASE_TAG = "<phase>"
BLOCK_TAG = "<for_each_function>"


def _agenda_tag(value: Any) -> str:
    if isinstance(value, ForEachFunction) or (
        isinstance(value, dict) and "for_each_function" in value
    ):
        return BLOCK_TAG
    return PHASE_TAG


AgendaItem = Annotated[
    Annotated[PhaseSpec, Tag(PHASE_TAG)] | Annotated[ForEachFunction, Tag(BLOCK_TAG)],
    Discriminator(_agenda_tag),
]


class Issue(NamedTuple):
    """A rule violation, located relative to the field being validated."""

    loc: tuple[str | int, ...]
    message: str
    expected: str | None = None


def check_agenda(
    items: Sequence[PhaseSpec | ForEachFunction], area_ids: Collection[str] | None
) -> list[Issue]:
    """Check the placement rules of ``phases``; ``area_ids`` is None when the board is invalid."""
    issues: list[Issue] = []
    seen: set[PhaseKind] = set()  # per-function kinds met so far, in agenda order
    for i, item in enumerate(items):
        if isinstance(item, ForEachFunction):
            for j, spec in enumerate(item.for_each_function):
                loc = (i, "for_each_function", j)
                if spec.kind in WHOLE_ROOM_KINDS:
                    msg = f"'{spec.kind}' is a whole-room phase, not allowed in for_each_function"
                    issues.append(Issue((*loc, "kind"), msg))
                needed = PREREQUISITES.get(spec.kind)
                if needed is not None and needed not in seen:
                    msg = f"a '{spec.kind}' phase needs an earlier '{needed}' phase"
                    issues.append(Issue((*loc, "kind"), msg, f"'{needed}' before '{spec.kind}'"))
                seen.add(spec.kind)
                issues += _check_spec(spec, loc, area_ids)
            continue
        if item.kind in PER_FUNCTION_KINDS:
            msg = (
                f"'{item.kind}' runs once per core function, so it must be inside for_each_function"
            )
            issues.append(Issue((i, "kind"), msg))
            seen.add(item.kind)  # reported once here, not again by a later prerequisite
        elif item.kind is PhaseKind.LOBBY and i != 0:
            issues.append(Issue((i, "kind"), "the lobby must be the first phase"))
        elif item.kind is PhaseKind.SUMMARY and i != len(items) - 1:
            issues.append(Issue((i, "kind"), "the summary must be the last phase"))
        issues += _check_spec(item, (i,), area_ids)
    return issues


def _check_spec(
    spec: PhaseSpec, loc: tuple[str | int, ...], area_ids: Collection[str] | None
) -> list[Issue]:
    issues: list[Issue] = []
    if spec.kind is not PhaseKind.PRIORITISE:
        for field in ("dot_budget", "area"):
            if getattr(spec, field) is not None:
                msg = f"only prioritise phases take '{field}' (this is a '{spec.kind}' phase)"
                issues.append(Issue((*loc, field), msg))
    elif spec.area is not None and area_ids is not None and spec.area not in area_ids:
        expected = "one of: " + ", ".join(area_ids)
        issues.append(Issue((*loc, "area"), f"'{spec.area}' is not a board area", expected))
    return issues


def uses_kinds(items: Sequence[PhaseSpec | ForEachFunction], kinds: Collection[PhaseKind]) -> bool:
    """Whether any per-function block of the agenda has a phase of one of ``kinds``."""
    return any(
        spec.kind in kinds
        for item in items
        if isinstance(item, ForEachFunction)
        for spec in item.for_each_function
    )


@dataclass(frozen=True, slots=True)
class Phase:
    """One step of the expanded agenda.

    ``key`` is stable and unique within a definition: ``<kind>`` for whole-room phases and
    ``<function_id>.<kind>`` for per-function phases; the second and later phases with the
    same base key get ``-2``, ``-3``, ... appended in agenda order.
    """

    key: str
    kind: PhaseKind
    title: str
    function_id: str | None = None
    minutes: int | None = None
    dot_budget: int | None = None
    area: str | None = None
    text: str | None = None


def expand_phases(definition: Definition) -> tuple[Phase, ...]:
    """The flat agenda: each ``for_each_function`` block is repeated per core function.

    Prioritise phases get their dot budget (default ``settings.dot_budget``) and board area
    (default: the last board area) filled in; other phases have both as None.
    """
    counts: dict[str, int] = {}
    phases: list[Phase] = []

    def emit(spec: PhaseSpec, function_id: str | None) -> None:
        base = spec.kind.value if function_id is None else f"{function_id}.{spec.kind.value}"
        counts[base] = counts.get(base, 0) + 1
        key = base if counts[base] == 1 else f"{base}-{counts[base]}"
        prioritise = spec.kind is PhaseKind.PRIORITISE
        budget = spec.dot_budget or definition.settings.dot_budget
        area = spec.area or definition.board.areas[-1].id
        phases.append(
            Phase(
                key=key,
                kind=spec.kind,
                title=spec.title or DEFAULT_TITLES[spec.kind],
                function_id=function_id,
                minutes=spec.minutes,
                dot_budget=budget if prioritise else None,
                area=area if prioritise else None,
                text=spec.text,
            )
        )

    for item in definition.phases:
        if isinstance(item, ForEachFunction):
            for function in definition.functions:
                for spec in item.for_each_function:
                    emit(spec, function.id)
        else:
            emit(item, None)
    return tuple(phases)
