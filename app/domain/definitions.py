"""Workshop definitions: the YAML files in ``workshop_templates/`` as typed, frozen models.

A definition names the maturity scale, the core functions with their practice cards, the
reflect board and the agenda. Loading never stops at the first mistake: every problem found
is reported as a :class:`DefinitionProblem` inside one :class:`DefinitionError`.
See ``docs/definitions.md`` for the format reference.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import yaml
from pydantic import (
    BaseModel,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from app.domain.phases import (
    BLOCK_TAG,
    CARD_KINDS,
    PHASE_TAG,
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

DEFAULT_DEFINITIONS_DIR = Path(__file__).resolve().parents[2] / "workshop_templates"
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


# --- loading -----------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """Safe YAML loader that rejects duplicate keys and aliases (no silent overrides/bombs)."""

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
            problem = "aliases (*name) are not allowed in workshop definitions"
            raise yaml.composer.ComposerError(None, None, problem, mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[str] = set()
        for key, _ in node.value:
            if isinstance(key, ScalarNode):
                if key.value in seen:
                    problem = f"duplicate key '{key.value}'"
                    raise yaml.constructor.ConstructorError(None, None, problem, key.start_mark)
                seen.add(key.value)
        return super().construct_mapping(node, deep)


def _path(loc: Loc) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _locate(root: Node | None, loc: Loc) -> tuple[int | None, int | None]:
    """1-based line and column of the deepest YAML node on ``loc`` (a key for mappings)."""
    node, mark = root, None
    for part in loc:
        if isinstance(node, MappingNode):
            pair = next((kv for kv in node.value if getattr(kv[0], "value", None) == part), None)
            if pair is None:
                break
            mark, node = pair[0].start_mark, pair[1]
        elif isinstance(node, SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            mark = node.start_mark
        else:
            break
    return (mark.line + 1, mark.column + 1) if mark is not None else (None, None)


def _show(value: Any) -> str:
    if value is None:
        return "an empty value"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return repr(value if len(value) <= 40 else value[:37] + "...")
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, Mapping):
        return "a mapping"
    return "a list" if isinstance(value, list | tuple) else str(value)  # e.g. a YAML date


_TYPE_NAMES = {
    "string_type": "text",
    "int_type": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "bool_type": "true or false",
    "model_type": "a mapping",
    "dict_type": "a mapping",
    "tuple_type": "a list",
    "list_type": "a list",
}
# Which model an error location (its field names and union tags only) points into.
_MODELS: dict[tuple[str, ...], type[BaseModel]] = {
    (): Definition,
    ("scale",): Level,
    ("functions",): CoreFunction,
    ("functions", "cards"): Card,
    ("board",): Board,
    ("board", "areas"): BoardArea,
    ("phases", PHASE_TAG): PhaseSpec,
    ("phases", BLOCK_TAG): ForEachFunction,
    ("phases", BLOCK_TAG, "for_each_function"): PhaseSpec,
    ("scoring",): Scoring,
    ("settings",): Settings,
}
_SLUG_RULE = "lowercase letters, digits and single hyphens, like 'customer-understanding'"
_BOUNDS = {"greater_than": "more than {gt}", "greater_than_equal": "at least {ge}"}
_BOUNDS |= {"less_than": "less than {lt}", "less_than_equal": "at most {le}"}


def _explain(
    kind: str, value: Any, ctx: Mapping[str, Any], raw_loc: Sequence[Any], msg: str
) -> tuple[str, str | None] | None:
    """Message and expectation for one pydantic error, worded for definition authors.

    None for errors that are only a side effect of others and would mislead.
    """
    if kind == "missing":
        return "required field is missing", None
    if kind == "extra_forbidden":
        model = _MODELS.get(tuple(part for part in raw_loc[:-1] if isinstance(part, str)))
        return "unknown field", None if model is None else "one of: " + ", ".join(
            model.model_fields
        )
    if kind == "literal_error":
        return f"version {_show(value)} is not supported", ctx.get("expected")
    if kind == "enum":
        return f"{_show(value)} is not a phase kind", "one of: " + ", ".join(PhaseKind)
    if kind == "string_pattern_mismatch":
        return f"{_show(value)} is not a valid id", _SLUG_RULE
    if kind == "string_too_short":
        return "must not be empty", None
    if kind == "string_too_long":
        return f"is {len(value)} characters long", f"at most {ctx['max_length']} characters"
    if kind in ("too_short", "too_long"):
        # pydantic counts only the valid items; judge the list as written instead
        count = len(value) if isinstance(value, list | tuple) else ctx["actual_length"]
        if kind == "too_short" and count >= ctx["min_length"]:
            return None
        limit = f"at least {ctx['min_length']}" if kind == "too_short" else ""
        noun = "item" if count == 1 else "items"
        return f"has {count} {noun}", limit or f"at most {ctx['max_length']}"
    if kind in _BOUNDS:
        return f"got {_show(value)}", _BOUNDS[kind].format(**ctx)
    if kind in _TYPE_NAMES:
        return f"got {_show(value)}", _TYPE_NAMES[kind]
    return msg, None


def _problems(exc: ValidationError, source: str, root: Node | None) -> list[DefinitionProblem]:
    problems: list[DefinitionProblem] = []
    for error in exc.errors():
        raw_loc = error["loc"]
        loc = tuple(part for part in raw_loc if part not in (PHASE_TAG, BLOCK_TAG))
        ctx = error.get("ctx", {})
        cause = ctx.get("error")
        if isinstance(cause, _Invalid):
            found = [(loc + issue.loc, issue.message, issue.expected) for issue in cause.issues]
        else:
            explained = _explain(error["type"], error["input"], ctx, raw_loc, error["msg"])
            found = [] if explained is None else [(loc, *explained)]
        for where, message, expected in found:
            problems.append(
                DefinitionProblem(source, _path(where), message, expected, *_locate(root, where))
            )
    return problems


def _fail(source: str, message: str, expected: str | None = None, *at: int) -> DefinitionError:
    """An error with one whole-file problem (``at``: optional line and column)."""
    return DefinitionError([DefinitionProblem(source, "", message, expected, *at)])


def _build(text: str, source: str, stem: str | None) -> Definition:
    if len(text) > MAX_DEFINITION_CHARS:
        size = f"{len(text)} characters"
        raise _fail(source, f"the file is too large ({size})", f"at most {MAX_DEFINITION_CHARS}")
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        data = None if root is None else loader.construct_document(root)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at = (mark.line + 1, mark.column + 1) if mark is not None else ()
        problem = exc.problem or exc.context or "unreadable"
        raise _fail(source, f"invalid YAML: {problem}", None, *at) from exc
    except yaml.YAMLError as exc:
        raise _fail(source, f"invalid YAML: {exc}") from exc
    finally:
        loader.dispose()
    return _from_data(data, source, root, stem)


def _from_data(data: Any, source: str, root: Node | None, stem: str | None) -> Definition:
    if not isinstance(data, Mapping):
        got = "the file is empty" if data is None else f"got {_show(data)}"
        raise _fail(source, got, "a mapping with format, id, title, scale, functions and phases")
    problems: list[DefinitionProblem] = []
    definition = None
    try:
        definition = Definition.model_validate(data)
    except ValidationError as exc:
        problems = _problems(exc, source, root)
    ident = data.get("id")
    if stem is not None and isinstance(ident, str) and ident != stem:
        message = f"id '{ident}' does not match the file name"
        expected = f"'{stem}', the file name without .yaml"
        problems.append(DefinitionProblem(source, "id", message, expected, *_locate(root, ("id",))))
    if problems or definition is None:
        raise DefinitionError(sorted(problems, key=lambda p: (p.line or 0, p.column or 0)))
    return definition


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def parse_definition(text: str, *, source: str) -> Definition:
    """Parse definition YAML; ``source`` names it in problems (the id/file-name rule is skipped)."""
    return _build(text, source, None)


def load_definition(path: Path) -> Definition:
    """Load one definition file; its ``id`` must equal the file name without ``.yaml``."""
    source = _display(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise _fail(source, "file not found") from None
    except UnicodeDecodeError:
        raise _fail(source, "the file is not UTF-8 text") from None
    except OSError as exc:
        raise _fail(source, f"cannot read the file: {exc.strerror or exc}") from None
    return _build(text, source, path.stem)


def load_definitions(directory: Path = DEFAULT_DEFINITIONS_DIR) -> dict[str, Definition]:
    """Load every ``*.yaml`` in ``directory`` (by file name), keyed by id; all problems at once."""
    if not directory.is_dir():
        raise _fail(_display(directory), "directory not found")
    definitions: dict[str, Definition] = {}
    problems: list[DefinitionProblem] = []
    for path in sorted(directory.glob("*.yaml")):
        try:
            definition = load_definition(path)
        except DefinitionError as exc:
            problems += exc.problems
        else:
            definitions[definition.id] = definition
    if problems:
        raise DefinitionError(problems)
    return definitions


def validate_file(path: Path) -> list[DefinitionProblem]:
    """Problems with one definition file; an empty list means it is valid."""
    try:
        load_definition(path)
    except DefinitionError as exc:
        return exc.problems
    return []


def definition_to_snapshot(definition: Definition) -> dict[str, Any]:
    """JSON-ready copy of the definition, with every default written out."""
    return definition.model_dump(mode="json")


def definition_from_snapshot(snapshot: Mapping[str, Any]) -> Definition:
    """Rebuild a definition from :func:`definition_to_snapshot` output (validated again)."""
    return _from_data(snapshot, SNAPSHOT_SOURCE, None, None)
