"""Workshop definitions: the YAML files in ``workshop_templates/`` as typed, frozen models.

A definition names the maturity scale, the core functions with their practice cards, the
reflect board and the agenda. Loading never stops at the first mistake: every problem found
is reported as a :class:`DefinitionProblem` inside one :class:`DefinitionError`.
See ``docs/definitions.md`` for the format reference.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import (
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from app.domain.phases import (
    CARD_KINDS,
    AgendaItem,
    FrozenModel,
    Issue,
    Name,
    Slug,
    Text,
    Title,
    check_agenda,
    uses_kinds,
)
from app.domain.phases import ForEachFunction as ForEachFunction
from app.domain.phases import Phase as Phase
from app.domain.phases import PhaseKind as PhaseKind
from app.domain.phases import PhaseSpec as PhaseSpec
from app.domain.phases import expand_phases as expand_phases

DEFAULT_DEFINITIONS_DIR: Path = Path(__file__).resolve().parents[2] / "workshop_templates"
MAX_DEFINITION_CHARS = 500_000
SNAPSHOT_SOURCE = "<snapshot>"

Loc = tuple[str | int, ...]
CardText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=400)]
Fraction = Annotated[float, Field(strict=True, ge=0, le=1)]


@dataclass(frozen=True, slots=True)
class DefinitionProblem:
    """One thing wrong with a definition; ``path`` is like ``functions[2].cards[0].level``."""

    file: str
    path: str
    message: str
    expected: str | None = None
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}" + (f":{self.column}" if self.column is not None else "")
        text = self.message + (f" (expected {self.expected})" if self.expected else "")
        return f"{where}: {self.path}: {text}" if self.path else f"{where}: {text}"


class DefinitionError(Exception):
    """A definition could not be loaded; ``problems`` lists everything found, in file order."""

    def __init__(self, problems: Sequence[DefinitionProblem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class UnknownIdError(KeyError):
    """A level, core function or card id that the definition does not have."""

    def __init__(self, what: str, ident: str, definition_id: str) -> None:
        super().__init__(ident)
        self.what, self.ident, self.definition_id = what, ident, definition_id

    def __str__(self) -> str:
        return f"{self.what} '{self.ident}' is not in definition '{self.definition_id}'"


class _Invalid(ValueError):
    """Raised by validators; carries issues located relative to the validated field."""

    def __init__(self, issues: Sequence[Issue]) -> None:
        super().__init__("; ".join(issue.message for issue in issues))
        self.issues = tuple(issues)


def _raise_issues(issues: Sequence[Issue]) -> None:
    if issues:
        raise _Invalid(issues)


def _path(loc: Loc) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _duplicates(items: Sequence[tuple[Loc, str]], what: str, prefix: str) -> list[Issue]:
    first: dict[str, Loc] = {}
    issues: list[Issue] = []
    for loc, value in items:
        if value in first:
            where = prefix + _path(first[value])
            issues.append(Issue(loc, f"duplicate {what} '{value}', already used at {where}"))
        first.setdefault(value, loc)
    return issues


class Level(FrozenModel):
    id: Slug
    name: Name
    description: Text = ""


class Card(FrozenModel):
    id: Slug
    level: Slug
    title: Name
    text: CardText


class CoreFunction(FrozenModel):
    id: Slug
    name: Name
    description: Text = ""
    cards: tuple[Card, ...] = Field(default=(), max_length=20)


class BoardArea(FrozenModel):
    id: Slug
    name: Name
    description: Text = ""


DEFAULT_AREAS = (
    BoardArea(id="now", name="Where we are now"),
    BoardArea(id="hope", name="Where we hope to be"),
    BoardArea(id="how", name="How we'll get there"),
)
DEFAULT_COLOURS = ("yellow", "pink", "blue", "green", "orange", "purple")


class Board(FrozenModel):
    areas: tuple[BoardArea, ...] = Field(default=DEFAULT_AREAS, min_length=1, max_length=6)
    colours: tuple[Slug, ...] = Field(default=DEFAULT_COLOURS, min_length=1, max_length=12)

    @model_validator(mode="after")
    def _unique(self) -> Self:
        areas = [(("areas", i, "id"), a.id) for i, a in enumerate(self.areas)]
        colours = [(("colours", i), c) for i, c in enumerate(self.colours)]
        _raise_issues(
            _duplicates(areas, "area id", "board.") + _duplicates(colours, "colour", "board.")
        )
        return self


class Scoring(FrozenModel):
    practised_threshold: float = Field(default=2 / 3, strict=True, gt=0.5, le=1)
    low_agreement: Fraction = 0.6
    low_modal_share: Fraction = 0.7


class Settings(FrozenModel):
    anonymous: bool = Field(default=False, strict=True)
    dot_budget: int = Field(default=3, strict=True, ge=1, le=50)


class Definition(FrozenModel):
    format: Literal[1]
    id: Slug
    title: Title
    description: Text = ""
    scale: tuple[Level, ...] = Field(min_length=2, max_length=7)
    functions: tuple[CoreFunction, ...] = Field(min_length=1, max_length=12)
    board: Board = Field(default_factory=Board)
    phases: tuple[AgendaItem, ...] = Field(min_length=1, max_length=50)
    scoring: Scoring = Field(default_factory=Scoring)
    settings: Settings = Field(default_factory=Settings)

    @field_validator("scale")
    @classmethod
    def _check_scale(cls, scale: tuple[Level, ...]) -> tuple[Level, ...]:
        _raise_issues(
            _duplicates([((i, "id"), lv.id) for i, lv in enumerate(scale)], "level id", "scale")
        )
        return scale

    @field_validator("functions")
    @classmethod
    def _check_functions(
        cls, functions: tuple[CoreFunction, ...], info: ValidationInfo
    ) -> tuple[CoreFunction, ...]:
        ids = [((i, "id"), f.id) for i, f in enumerate(functions)]
        cards = [
            ((i, "cards", j), c) for i, f in enumerate(functions) for j, c in enumerate(f.cards)
        ]
        issues = _duplicates(ids, "function id", "functions")
        issues += _duplicates([((*loc, "id"), c.id) for loc, c in cards], "card id", "functions")
        scale: tuple[Level, ...] | None = info.data.get("scale")
        if scale is not None:
            levels = [lv.id for lv in scale]
            expected = "one of: " + ", ".join(levels)
            for loc, card in cards:
                if card.level not in levels:
                    message = f"'{card.level}' is not a level of this scale"
                    issues.append(Issue((*loc, "level"), message, expected))
        _raise_issues(issues)
        return functions

    @field_validator("phases")
    @classmethod
    def _check_phases(
        cls, phases: tuple[PhaseSpec | ForEachFunction, ...], info: ValidationInfo
    ) -> tuple[PhaseSpec | ForEachFunction, ...]:
        board: Board | None = info.data.get("board")
        _raise_issues(check_agenda(phases, None if board is None else [a.id for a in board.areas]))
        return phases

    @model_validator(mode="after")
    def _check_cards_present(self) -> Self:
        if uses_kinds(self.phases, CARD_KINDS):
            message = "core function '{}' has no cards, but the agenda sorts or discusses cards"
            _raise_issues(
                [
                    Issue(("functions", i, "cards"), message.format(f.id), "at least 1 card")
                    for i, f in enumerate(self.functions)
                    if not f.cards
                ]
            )
        return self

    @property
    def level_ids(self) -> tuple[str, ...]:
        return tuple(level.id for level in self.scale)

    @property
    def level_names(self) -> tuple[str, ...]:
        return tuple(level.name for level in self.scale)

    @property
    def function_ids(self) -> tuple[str, ...]:
        return tuple(function.id for function in self.functions)

    def level(self, level_id: str) -> Level:
        return self.scale[self.level_index(level_id)]

    def level_index(self, level_id: str) -> int:
        """Position of a level on the scale, 0 for the lowest."""
        for index, level in enumerate(self.scale):
            if level.id == level_id:
                return index
        raise UnknownIdError("level", level_id, self.id)

    def function(self, function_id: str) -> CoreFunction:
        for function in self.functions:
            if function.id == function_id:
                return function
        raise UnknownIdError("core function", function_id, self.id)

    def card(self, card_id: str) -> Card:
        return next(c for c in self.function_of_card(card_id).cards if c.id == card_id)

    def function_of_card(self, card_id: str) -> CoreFunction:
        for function in self.functions:
            if any(card.id == card_id for card in function.cards):
                return function
        raise UnknownIdError("card", card_id, self.id)


# Loading lives in its own module; these names stay importable from here.
from app.domain.definition_loading import (  # noqa: E402
    definition_from_snapshot as definition_from_snapshot,
)
from app.domain.definition_loading import (  # noqa: E402
    definition_to_snapshot as definition_to_snapshot,
)
from app.domain.definition_loading import load_definition as load_definition  # noqa: E402
from app.domain.definition_loading import load_definitions as load_definitions  # noqa: E402
from app.domain.definition_loading import parse_definition as parse_definition  # noqa: E402
from app.domain.definition_loading import validate_file as validate_file  # noqa: E402
