"""Check an export document before import: shape first, then meaning.

:func:`parse` validates the JSON against :class:`ExportDocument` (the published schema);
:func:`check` then holds every reference against the document's own definition snapshot:
cards belong to their core function, levels are on the scale, notes sit on the board's
areas, each vote and note names a participant the document lists, and nothing breaks a
uniqueness rule of the tables. Every problem is collected, so one 422 lists them all.
Pure: no database, no clock.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable
from typing import Any

from pydantic import ValidationError

from app.domain.definitions import Definition, DefinitionError, definition_from_snapshot
from app.domain.phases import PhaseKind, expand_phases
from app.exports.document import IMPORTING, SCHEMA_VERSION, ExportDocument
from app.services.errors import Invalid

MAX_PROBLEMS = 50


class ImportRejected(Invalid):
    """The document cannot be imported; ``problems`` says where and why."""

    code = "invalid_export"

    def __init__(self, problems: list[str]) -> None:
        shown = problems[:MAX_PROBLEMS]
        more = len(problems) - len(shown)
        super().__init__(
            f"the document is not a valid workshop export ({len(problems)} problem"
            f"{'s' if len(problems) != 1 else ''}): " + "; ".join(shown[:3])
        )
        self.problems = shown + ([f"... and {more} more"] if more else [])


def _loc(loc: Iterable[Any]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(document)"


def parse(data: Any) -> ExportDocument:
    if isinstance(data, dict) and data.get("schema_version") not in (None, SCHEMA_VERSION):
        raise ImportRejected(
            [
                f"schema_version: {data.get('schema_version')!r} is not supported "
                f"(this server reads version {SCHEMA_VERSION})"
            ]
        )
    try:
        return ExportDocument.model_validate(data, context=IMPORTING)
    except ValidationError as exc:
        raise ImportRejected([f"{_loc(e['loc'])}: {e['msg']}" for e in exc.errors()]) from exc


def _duplicates(keys: Iterable[Hashable], where: str, what: str) -> list[str]:
    counts = Counter(keys)
    return [f"{where}: {what} {key!r} appears {n} times" for key, n in counts.items() if n > 1]


def _ordinals(ids: list[str], prefix: str, where: str) -> list[str]:
    expected = [f"{prefix}{i}" for i in range(1, len(ids) + 1)]
    if ids != expected:
        return [f"{where}: ids must be {prefix}1, {prefix}2, ... in order"]
    return []


def check(doc: ExportDocument) -> Definition:
    """The document's definition, once everything in the document agrees with it."""
    try:
        definition = definition_from_snapshot(doc.definition)
    except DefinitionError as exc:
        raise ImportRejected(
            [f"definition: {p.path or '(top)'}: {p.message}" for p in exc.problems]
        ) from exc
    problems: list[str] = []
    problems += _workshop(doc, definition)
    problems += _participants(doc)
    problems += _votes(doc, definition)
    problems += _board(doc, definition)
    problems += _decisions(doc, definition)
    if problems:
        raise ImportRejected(problems)
    return definition


def _workshop(doc: ExportDocument, definition: Definition) -> list[str]:
    info = doc.workshop
    problems: list[str] = []
    if info.definition_id != definition.id:
        problems.append(
            f"workshop.definition_id: '{info.definition_id}' differs from the definition's "
            f"id '{definition.id}'"
        )
    phases = expand_phases(definition)
    if info.current_phase >= len(phases):
        problems.append(f"workshop.current_phase: {info.current_phase} is past the last phase")
    prioritise = {p.key for p in phases if p.kind is PhaseKind.PRIORITISE}
    problems += [
        f"workshop.phase_budgets: '{key}' is not a prioritise phase"
        for key in info.phase_budgets
        if key not in prioritise
    ]
    return problems


def _participants(doc: ExportDocument) -> list[str]:
    people = doc.participants
    problems = _ordinals([p.id for p in people], "p", "participants")
    for i, p in enumerate(people):
        where = f"participants[{i}]"
        if doc.workshop.anonymous:
            if p.display_name or p.organisation or p.joined_at or p.removed_at:
                problems.append(
                    f"{where}: an anonymous workshop's participants carry no "
                    "name, organisation or times"
                )
            continue
        if p.display_name is None or p.joined_at is None:
            problems.append(f"{where}: display_name and joined_at are required")
        if p.removed != (p.removed_at is not None):
            problems.append(f"{where}: removed and removed_at disagree")
    names = [p.display_name.casefold() for p in people if p.display_name]
    return problems + _duplicates(names, "participants", "display name")


def _votes(doc: ExportDocument, definition: Definition) -> list[str]:
    people = {p.id for p in doc.participants}
    functions = set(definition.function_ids)
    cards = {c.id: f.id for f in definition.functions for c in f.cards}
    problems: list[str] = []
    for i, r in enumerate(doc.level_rounds):
        if r.function_id not in functions:
            problems.append(f"level_rounds[{i}].function_id: no core function '{r.function_id}'")
    problems += _duplicates(
        ((r.function_id, r.round) for r in doc.level_rounds), "level_rounds", "round"
    )
    for i, v in enumerate(doc.card_votes):
        where = f"card_votes[{i}]"
        if v.participant not in people:
            problems.append(f"{where}.participant: no participant '{v.participant}'")
        if cards.get(v.card_id) != v.function_id:
            problems.append(f"{where}.card_id: '{v.card_id}' is not a card of '{v.function_id}'")
    problems += _duplicates(
        ((v.participant, v.card_id) for v in doc.card_votes), "card_votes", "vote"
    )
    n_levels = len(definition.scale)
    for i, lv in enumerate(doc.level_votes):
        where = f"level_votes[{i}]"
        if lv.participant not in people:
            problems.append(f"{where}.participant: no participant '{lv.participant}'")
        if lv.function_id not in functions:
            problems.append(f"{where}.function_id: no core function '{lv.function_id}'")
        if lv.level >= n_levels:
            problems.append(f"{where}.level: {lv.level} is not on the {n_levels}-level scale")
    problems += _duplicates(
        ((v.participant, v.function_id, v.round) for v in doc.level_votes), "level_votes", "vote"
    )
    return problems


def _board(doc: ExportDocument, definition: Definition) -> list[str]:
    people = {p.id for p in doc.participants}
    functions = set(definition.function_ids)
    areas = {a.id for a in definition.board.areas}
    colours = set(definition.board.colours)
    dot_phases = {p.key for p in expand_phases(definition) if p.kind is PhaseKind.PRIORITISE}
    problems = _ordinals([g.id for g in doc.note_groups], "g", "note_groups")
    problems += _ordinals([n.id for n in doc.notes], "n", "notes")
    groups = {g.id: (g.function_id, g.area) for g in doc.note_groups}
    for i, g in enumerate(doc.note_groups):
        if g.function_id not in functions or g.area not in areas:
            problems.append(f"note_groups[{i}]: no area '{g.area}' of '{g.function_id}'")
    for i, n in enumerate(doc.notes):
        where = f"notes[{i}]"
        if n.function_id not in functions or n.area not in areas:
            problems.append(f"{where}: no area '{n.area}' of '{n.function_id}'")
        if n.colour not in colours:
            problems.append(f"{where}.colour: '{n.colour}' is not a colour of this board")
        if n.group is not None and groups.get(n.group) != (n.function_id, n.area):
            problems.append(f"{where}.group: '{n.group}' is not a group of the note's area")
        if n.author not in (None, "facilitator") and n.author not in people:
            problems.append(f"{where}.author: no participant '{n.author}'")
        for j, dot in enumerate(n.dots):
            if dot.participant not in people:
                problems.append(
                    f"{where}.dots[{j}].participant: no participant '{dot.participant}'"
                )
            if dot.phase_key not in dot_phases:
                problems.append(
                    f"{where}.dots[{j}].phase_key: '{dot.phase_key}' is not a prioritise phase"
                )
    return problems


def _decisions(doc: ExportDocument, definition: Definition) -> list[str]:
    cards = {c.id: f.id for f in definition.functions for c in f.cards}
    functions = set(definition.function_ids)
    problems: list[str] = []
    for i, c in enumerate(doc.card_decisions):
        if cards.get(c.card_id) != c.function_id:
            problems.append(
                f"card_decisions[{i}].card_id: '{c.card_id}' is not a card of '{c.function_id}'"
            )
    problems += _duplicates((c.card_id for c in doc.card_decisions), "card_decisions", "card")
    for i, x in enumerate(doc.level_decisions):
        if x.function_id not in functions:
            problems.append(f"level_decisions[{i}].function_id: no core function '{x.function_id}'")
        if x.level >= len(definition.scale):
            problems.append(f"level_decisions[{i}].level: {x.level} is not on the scale")
    problems += _duplicates(
        (x.function_id for x in doc.level_decisions), "level_decisions", "core function"
    )
    return problems
