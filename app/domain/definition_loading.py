"""Reading workshop definitions: YAML text or files into `Definition`, with every problem
reported at once (file, line, path of the field, what is wrong, what was expected).

Split from :mod:`app.domain.definitions` (the models), which re-exports these names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from app.domain.definitions import (
    DEFAULT_DEFINITIONS_DIR,
    MAX_DEFINITION_CHARS,
    SNAPSHOT_SOURCE,
    Board,
    BoardArea,
    Card,
    CoreFunction,
    Definition,
    DefinitionError,
    DefinitionProblem,
    Level,
    Loc,
    Scoring,
    Settings,
    _Invalid,
    _path,
)
from app.domain.phases import BLOCK_TAG, PHASE_TAG, ForEachFunction, PhaseKind, PhaseSpec

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
