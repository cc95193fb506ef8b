"""Workshop definitions: shipped files, phase expansion, snapshots and every kind of problem."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from app.domain.definitions import (
    DEFAULT_DEFINITIONS_DIR,
    Definition,
    DefinitionError,
    DefinitionProblem,
    PhaseKind,
    UnknownIdError,
    definition_from_snapshot,
    definition_to_snapshot,
    expand_phases,
    load_definition,
    load_definitions,
    parse_definition,
    validate_file,
)

SHIPPED = ("dhs-cx-maturity", "govcx-four-level")
A11_FUNCTIONS = (
    "Measurement",
    "Governance & Strategy",
    "Culture & Organization",
    "Customer Understanding",
    "Service Design & Improvement",
)

# A small valid definition; each invalid case below changes one thing in a copy of it.
BASE: dict[str, Any] = {
    "format": 1,
    "id": "mini",
    "title": "Mini workshop",
    "scale": [
        {"id": "emerging", "name": "Emerging"},
        {"id": "established", "name": "Established"},
        {"id": "exemplary", "name": "Exemplary"},
    ],
    "functions": [
        {
            "id": "measurement",
            "name": "Measurement",
            "cards": [
                {"id": "m-1", "level": "emerging", "title": "One", "text": "First card."},
                {"id": "m-2", "level": "exemplary", "title": "Two", "text": "Second card."},
            ],
        },
        {
            "id": "culture",
            "name": "Culture",
            "cards": [
                {"id": "c-1", "level": "established", "title": "Three", "text": "Third card."}
            ],
        },
    ],
    "phases": [
        {"kind": "lobby"},
        {
            "for_each_function": [
                {"kind": "sort", "minutes": 8},
                {"kind": "discuss"},
                {"kind": "level_vote"},
                {"kind": "reflect"},
                {"kind": "prioritise", "dot_budget": 4},
            ]
        },
        {"kind": "summary"},
    ],
}


def parse(data: dict[str, Any], source: str = "mini.yaml") -> Definition:
    return parse_definition(yaml.safe_dump(data, sort_keys=False), source=source)


def problems_of(data: dict[str, Any]) -> list[DefinitionProblem]:
    with pytest.raises(DefinitionError) as caught:
        parse(data)
    return caught.value.problems


def changed(change: Callable[[dict[str, Any]], object]) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    change(data)
    return data


def block(data: dict[str, Any]) -> list[dict[str, Any]]:
    phases: list[dict[str, Any]] = data["phases"][1]["for_each_function"]
    return phases


# --- the shipped definitions -----------------------------------------------------------


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_definition_is_valid(name: str) -> None:
    path = DEFAULT_DEFINITIONS_DIR / f"{name}.yaml"
    assert validate_file(path) == []
    assert load_definition(path).id == name


def test_load_definitions_reads_the_default_directory() -> None:
    definitions = load_definitions(DEFAULT_DEFINITIONS_DIR)
    assert list(definitions) == sorted(definitions)
    assert set(SHIPPED) <= set(definitions)


def test_default_definition_follows_the_dhs_model() -> None:
    defn = load_definition(DEFAULT_DEFINITIONS_DIR / "dhs-cx-maturity.yaml")
    assert defn.level_names == ("Emerging", "Established", "Exemplary")
    assert tuple(f.name for f in defn.functions) == A11_FUNCTIONS
    for function in defn.functions:
        assert 6 <= len(function.cards) <= 9
        for level in defn.level_ids:
            assert sum(card.level == level for card in function.cards) >= 2
    assert defn.scoring.practised_threshold == pytest.approx(2 / 3, abs=1e-4)


def test_default_definition_expands_to_the_product_flow() -> None:
    defn = load_definition(DEFAULT_DEFINITIONS_DIR / "dhs-cx-maturity.yaml")
    phases = expand_phases(defn)
    keys = [p.key for p in phases]
    assert len(phases) == 1 + 5 * 5 + 1 == 27
    assert len(set(keys)) == len(keys)
    assert keys[:7] == [
        "lobby",
        "measurement.sort",
        "measurement.discuss",
        "measurement.level_vote",
        "measurement.reflect",
        "measurement.prioritise",
        "governance-strategy.sort",
    ]
    assert keys[-1] == "summary"
    prioritise = [p for p in phases if p.kind is PhaseKind.PRIORITISE]
    assert len(prioritise) == 5
    assert all(p.dot_budget == 3 and p.area == "how" and p.minutes == 5 for p in prioritise)
    assert all(p.dot_budget is None and p.area is None for p in phases if p not in prioritise)
    assert phases[0].function_id is None and phases[1].function_id == "measurement"


def test_second_definition_uses_another_scale_and_agenda() -> None:
    defn = load_definition(DEFAULT_DEFINITIONS_DIR / "govcx-four-level.yaml")
    assert len(defn.scale) == 4
    keys = [p.key for p in expand_phases(defn)]
    n = len(defn.functions)
    assert len(keys) == 2 + 3 * n + 1 + n + 1
    assert keys[:3] == ["lobby", "info", "digital.sort"]
    assert keys[2 + 3 * n] == "info-2"
    assert keys[-2] == f"{defn.functions[-1].id}.level_vote"
    assert not any(key.endswith(".prioritise") for key in keys)
    assert defn.settings.anonymous is True


# --- expansion, helpers and snapshots ---------------------------------------------------


def test_expand_fills_defaults_and_numbers_repeated_kinds() -> None:
    data = changed(lambda d: block(d).append({"kind": "reflect", "title": "Again"}))
    data["phases"].insert(1, {"kind": "info", "text": "Hello"})
    data["phases"].insert(2, {"kind": "info", "title": "Rules"})
    data["settings"] = {"dot_budget": 7}
    phases = expand_phases(parse(data))
    by_key = {p.key: p for p in phases}
    assert [p.key for p in phases][:3] == ["lobby", "info", "info-2"]
    assert by_key["info"].title == "Information" and by_key["info"].text == "Hello"
    assert by_key["measurement.sort"].title == "Sort the cards"
    assert by_key["measurement.sort"].minutes == 8
    assert by_key["measurement.reflect-2"].title == "Again"
    assert by_key["culture.prioritise"].dot_budget == 4  # the phase's own budget wins
    assert by_key["culture.prioritise"].area == "how"  # the last board area by default


def test_lookup_helpers() -> None:
    defn = parse(BASE)
    assert defn.level_index("emerging") == 0 and defn.level_index("exemplary") == 2
    assert defn.level_ids == ("emerging", "established", "exemplary")
    assert defn.function("culture").name == "Culture"
    assert defn.card("m-2").title == "Two"
    assert defn.function_of_card("c-1").id == "culture"
    with pytest.raises(KeyError):
        defn.level_index("leading")
    with pytest.raises(UnknownIdError) as caught:
        defn.card("nope")
    assert str(caught.value) == "card 'nope' is not in definition 'mini'"
    with pytest.raises(UnknownIdError, match="core function 'x'"):
        defn.function("x")


def test_models_are_frozen() -> None:
    defn = parse(BASE)
    with pytest.raises(ValidationError):
        defn.title = "Changed"  # type: ignore[misc]


@pytest.mark.parametrize("name", SHIPPED)
def test_snapshot_round_trips_exactly(name: str) -> None:
    defn = load_definition(DEFAULT_DEFINITIONS_DIR / f"{name}.yaml")
    snapshot = definition_to_snapshot(defn)
    stored = json.loads(json.dumps(snapshot))
    assert stored == snapshot
    again = definition_from_snapshot(stored)
    assert again == defn
    assert definition_to_snapshot(again) == snapshot
    assert expand_phases(again) == expand_phases(defn)


def test_invalid_snapshot_raises_definition_error() -> None:
    snapshot = definition_to_snapshot(parse(BASE))
    snapshot["functions"][0]["cards"][0]["level"] = "lost"
    with pytest.raises(DefinitionError) as caught:
        definition_from_snapshot(snapshot)
    [problem] = caught.value.problems
    assert (problem.file, problem.path) == ("<snapshot>", "functions[0].cards[0].level")


# --- invalid definitions: one problem each ----------------------------------------------

LEVELS = "one of: emerging, established, exemplary"
CASES: list[tuple[str, Callable[[dict[str, Any]], object], str, str, str | None]] = [
    (
        "unknown card level",
        lambda d: d["functions"][1]["cards"][0].update(level="emergin"),
        "functions[1].cards[0].level",
        "'emergin' is not a level of this scale",
        LEVELS,
    ),
    (
        "duplicate card id across functions",
        lambda d: d["functions"][1]["cards"][0].update(id="m-2"),
        "functions[1].cards[0].id",
        "duplicate card id 'm-2', already used at functions[0].cards[1].id",
        None,
    ),
    (
        "duplicate function id",
        lambda d: d["functions"][1].update(id="measurement"),
        "functions[1].id",
        "duplicate function id 'measurement', already used at functions[0].id",
        None,
    ),
    (
        "duplicate level id",
        lambda d: d["scale"][2].update(id="emerging"),
        "scale[2].id",
        "duplicate level id 'emerging', already used at scale[0].id",
        None,
    ),
    (
        "extra field on a card",
        lambda d: d["functions"][0]["cards"][1].update(colour="red"),
        "functions[0].cards[1].colour",
        "unknown field",
        "one of: id, level, title, text",
    ),
    (
        "extra field at the top",
        lambda d: d.update(version=2),
        "version",
        "unknown field",
        "one of: format, id, title, description, scale, functions, board, phases, scoring, "
        "settings",
    ),
    (
        "extra field on a per-function phase",
        lambda d: block(d)[0].update(timebox=5),
        "phases[1].for_each_function[0].timebox",
        "unknown field",
        "one of: kind, title, minutes, text, dot_budget, area",
    ),
    (
        "wrong type for minutes",
        lambda d: block(d)[0].update(minutes="ten"),
        "phases[1].for_each_function[0].minutes",
        "got 'ten'",
        "a whole number",
    ),
    (
        "minutes as a decimal",
        lambda d: block(d)[0].update(minutes=2.5),
        "phases[1].for_each_function[0].minutes",
        "got 2.5",
        "a whole number",
    ),
    (
        "wrong type for a title",
        lambda d: d.update(title=12),
        "title",
        "got 12",
        "text",
    ),
    (
        "wrong type for a flag",
        lambda d: d.update(settings={"anonymous": "yes"}),
        "settings.anonymous",
        "got 'yes'",
        "true or false",
    ),
    (
        "functions is not a list",
        lambda d: d.update(functions={"id": "x"}),
        "functions",
        "got a mapping",
        "a list",
    ),
    ("missing title", lambda d: d.pop("title"), "title", "required field is missing", None),
    ("empty title", lambda d: d.update(title="  "), "title", "must not be empty", None),
    ("missing format", lambda d: d.pop("format"), "format", "required field is missing", None),
    ("future format", lambda d: d.update(format=2), "format", "version 2 is not supported", "1"),
    (
        "invalid id",
        lambda d: d["functions"][0].update(id="Customer Understanding"),
        "functions[0].id",
        "'Customer Understanding' is not a valid id",
        "lowercase letters, digits and single hyphens, like 'customer-understanding'",
    ),
    ("empty functions", lambda d: d.update(functions=[]), "functions", "has 0 items", "at least 1"),
    (
        "one-level scale",
        lambda d: d.update(scale=d["scale"][:1]),
        "scale",
        "has 1 item",
        "at least 2",
    ),
    (
        "eight-level scale",
        lambda d: d.update(scale=[{"id": f"l{i}", "name": f"L{i}"} for i in range(8)]),
        "scale",
        "has 8 items",
        "at most 7",
    ),
    (
        "card text too long",
        lambda d: d["functions"][0]["cards"][0].update(text="x" * 401),
        "functions[0].cards[0].text",
        "is 401 characters long",
        "at most 400 characters",
    ),
    (
        "threshold not above one half",
        lambda d: d.update(scoring={"practised_threshold": 0.5}),
        "scoring.practised_threshold",
        "got 0.5",
        "more than 0.5",
    ),
    (
        "dot budget zero",
        lambda d: block(d)[4].update(dot_budget=0),
        "phases[1].for_each_function[4].dot_budget",
        "got 0",
        "at least 1",
    ),
    (
        "unknown phase kind",
        lambda d: block(d)[2].update(kind="vote"),
        "phases[1].for_each_function[2].kind",
        "'vote' is not a phase kind",
        "one of: lobby, info, sort, discuss, level_vote, reflect, prioritise, summary",
    ),
    (
        "phase written as a string",
        lambda d: d["phases"].insert(1, "info"),
        "phases[1]",
        "got 'info'",
        "a mapping",
    ),
    (
        "phase area unknown",
        lambda d: block(d)[4].update(area="later"),
        "phases[1].for_each_function[4].area",
        "'later' is not a board area",
        "one of: now, hope, how",
    ),
    (
        "area on a reflect phase",
        lambda d: block(d)[3].update(area="how"),
        "phases[1].for_each_function[3].area",
        "only prioritise phases take 'area' (this is a 'reflect' phase)",
        None,
    ),
    (
        "per-function phase at top level",
        lambda d: d["phases"].insert(1, {"kind": "sort"}),
        "phases[1].kind",
        "'sort' runs once per core function, so it must be inside for_each_function",
        None,
    ),
    (
        "lobby inside for_each_function",
        lambda d: block(d).insert(0, {"kind": "lobby"}),
        "phases[1].for_each_function[0].kind",
        "'lobby' is a whole-room phase, not allowed in for_each_function",
        None,
    ),
    (
        "lobby not first",
        lambda d: d["phases"].insert(1, d["phases"].pop(0)),
        "phases[1].kind",
        "the lobby must be the first phase",
        None,
    ),
    (
        "two summaries",
        lambda d: d["phases"].append({"kind": "summary"}),
        "phases[2].kind",
        "the summary must be the last phase",
        None,
    ),
    (
        "discuss before sort",
        lambda d: block(d).insert(0, block(d).pop(1)),
        "phases[1].for_each_function[0].kind",
        "a 'discuss' phase needs an earlier 'sort' phase",
        "'sort' before 'discuss'",
    ),
    (
        "prioritise without reflect",
        lambda d: block(d).pop(3),
        "phases[1].for_each_function[3].kind",
        "a 'prioritise' phase needs an earlier 'reflect' phase",
        "'reflect' before 'prioritise'",
    ),
    (
        "empty for_each_function",
        lambda d: d["phases"][1].update(for_each_function=[]),
        "phases[1].for_each_function",
        "has 0 items",
        "at least 1",
    ),
    (
        "function without cards in a sorting agenda",
        lambda d: d["functions"][1].update(cards=[]),
        "functions[1].cards",
        "core function 'culture' has no cards, but the agenda sorts or discusses cards",
        "at least 1 card",
    ),
    (
        "duplicate board area",
        lambda d: d.update(board={"areas": [{"id": "a", "name": "A"}, {"id": "a", "name": "B"}]}),
        "board.areas[1].id",
        "duplicate area id 'a', already used at board.areas[0].id",
        None,
    ),
    (
        "duplicate colour",
        lambda d: d.update(board={"colours": ["pink", "blue", "pink"]}),
        "board.colours[2]",
        "duplicate colour 'pink', already used at board.colours[0]",
        None,
    ),
]


@pytest.mark.parametrize(
    ("change", "path", "message", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_invalid_definition(
    change: Callable[[dict[str, Any]], object], path: str, message: str, expected: str | None
) -> None:
    [problem] = problems_of(changed(change))
    assert (problem.file, problem.path, problem.message, problem.expected) == (
        "mini.yaml",
        path,
        message,
        expected,
    )


def test_function_without_cards_is_fine_when_nothing_is_sorted() -> None:
    def change(d: dict[str, Any]) -> None:
        d["functions"][1]["cards"] = []
        d["phases"][1]["for_each_function"] = [{"kind": "level_vote"}]

    assert parse(changed(change)).functions[1].cards == ()


def test_problem_renders_as_one_line() -> None:
    problem = DefinitionProblem(
        "workshop_templates/x.yaml",
        "functions[2].cards[0].level",
        "'emergin' is not a level of this scale",
        LEVELS,
    )
    assert str(problem) == (
        "workshop_templates/x.yaml: functions[2].cards[0].level: 'emergin' is not a level of "
        "this scale (expected one of: emerging, established, exemplary)"
    )
    located = DefinitionProblem("x.yaml", "", "invalid YAML: oops", None, 3, 7)
    assert str(located) == "x.yaml:3:7: invalid YAML: oops"


def test_problems_point_at_lines_in_the_file() -> None:
    text = yaml.safe_dump(changed(lambda d: d["functions"][1]["cards"][0].update(level="zz")))
    with pytest.raises(DefinitionError) as caught:
        parse_definition(text, source="mini.yaml")
    [problem] = caught.value.problems
    assert problem.line is not None
    assert text.splitlines()[problem.line - 1].strip() == "level: zz"
    assert str(problem).startswith(f"mini.yaml:{problem.line}:")


def test_all_problems_are_collected() -> None:
    def change(d: dict[str, Any]) -> None:
        d["functions"][0]["cards"][0]["level"] = "zz"  # checked with the functions
        d["functions"][1]["cards"][0]["level"] = "yy"
        d["scale"][0]["extra"] = True  # a structural problem elsewhere
        block(d)[4]["area"] = "nowhere"  # checked with the phases
        d["phases"].insert(1, {"kind": "reflect"})
        d["settings"] = {"dot_budget": 99}

    paths = [p.path for p in problems_of(changed(change))]
    assert sorted(paths) == sorted(
        [
            "scale[0].extra",
            "phases[1].kind",
            "phases[2].for_each_function[4].area",
            "settings.dot_budget",
        ]
    )
    # with a valid scale, both unknown levels are reported together
    change2 = changed(lambda d: d["functions"][1]["cards"][0].update(level="yy"))
    change2["functions"][0]["cards"][0]["level"] = "zz"
    assert [p.path for p in problems_of(change2)] == [
        "functions[0].cards[0].level",
        "functions[1].cards[0].level",
    ]


# --- files and YAML ----------------------------------------------------------------------

YAML_CASES = [
    ("bad indentation", "format: 1\nid: x\n  title: y\n", 3, "mapping values are not allowed"),
    ("unclosed list", "format: 1\nscale: [a, b\n", 3, "expected ',' or ']'"),
    ("duplicate key", "format: 1\nid: x\nid: y\n", 3, "duplicate key 'id'"),
    ("alias", "a: &x 1\nb: *x\n", 2, "aliases (*name) are not allowed"),
    ("two documents", "a: 1\n---\nb: 2\n", 2, "but found another document"),
]


@pytest.mark.parametrize(
    ("text", "line", "fragment"), [c[1:] for c in YAML_CASES], ids=[c[0] for c in YAML_CASES]
)
def test_bad_yaml_reports_the_line(text: str, line: int, fragment: str) -> None:
    with pytest.raises(DefinitionError) as caught:
        parse_definition(text, source="x.yaml")
    [problem] = caught.value.problems
    assert (problem.line, problem.path) == (line, "")
    assert problem.message.startswith("invalid YAML: ")
    assert fragment in problem.message
    assert str(problem).startswith(f"x.yaml:{line}:")


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "the file is empty"), ("- a\n- b\n", "got a list"), ("just text", "got 'just text'")],
)
def test_top_level_must_be_a_mapping(text: str, message: str) -> None:
    with pytest.raises(DefinitionError) as caught:
        parse_definition(text, source="x.yaml")
    [problem] = caught.value.problems
    assert problem.message == message
    assert problem.expected == "a mapping with format, id, title, scale, functions and phases"


def test_missing_file(tmp_path: Path) -> None:
    [problem] = validate_file(tmp_path / "absent.yaml")
    assert problem.message == "file not found"
    with pytest.raises(DefinitionError, match="file not found"):
        load_definition(tmp_path / "absent.yaml")


def test_id_must_match_the_file_name(tmp_path: Path) -> None:
    path = tmp_path / "other-name.yaml"
    path.write_text(yaml.safe_dump(BASE), encoding="utf-8")
    [problem] = validate_file(path)
    assert problem.path == "id"
    assert problem.message == "id 'mini' does not match the file name"
    assert problem.expected == "'other-name', the file name without .yaml"
    assert problem.line is not None


def test_id_mismatch_is_reported_with_other_problems(tmp_path: Path) -> None:
    path = tmp_path / "other-name.yaml"
    path.write_text(yaml.safe_dump(changed(lambda d: d.pop("title"))), encoding="utf-8")
    assert sorted(p.path for p in validate_file(path)) == ["id", "title"]


def test_load_definitions_aggregates_problems(tmp_path: Path) -> None:
    (tmp_path / "mini.yaml").write_text(yaml.safe_dump(BASE), encoding="utf-8")
    (tmp_path / "notes.txt").write_text("ignored", encoding="utf-8")
    assert list(load_definitions(tmp_path)) == ["mini"]
    (tmp_path / "broken.yaml").write_text("a: [", encoding="utf-8")
    bad = changed(lambda d: d.update(id="wrong", title=""))
    (tmp_path / "wrong.yaml").write_text(yaml.safe_dump(bad), encoding="utf-8")
    with pytest.raises(DefinitionError) as caught:
        load_definitions(tmp_path)
    files = [Path(p.file).name for p in caught.value.problems]
    assert files == ["broken.yaml", "wrong.yaml"]
    assert len(str(caught.value).splitlines()) == 2


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(DefinitionError, match="directory not found"):
        load_definitions(tmp_path / "nowhere")


# --- expansion property ------------------------------------------------------------------

PER_FUNCTION = ["sort", "discuss", "level_vote", "reflect", "prioritise", "info"]


@given(
    blocks=st.lists(
        st.lists(st.sampled_from(PER_FUNCTION), min_size=1, max_size=6), min_size=1, max_size=3
    ),
    infos=st.integers(min_value=0, max_value=3),
)
def test_expanded_keys_are_unique(blocks: list[list[str]], infos: int) -> None:
    order = ["sort", "reflect"]  # prerequisites first, so any mix of kinds is valid
    items: list[dict[str, Any]] = [{"for_each_function": [{"kind": k} for k in order]}]
    items += [{"for_each_function": [{"kind": k} for k in kinds]} for kinds in blocks]
    items += [{"kind": "info"} for _ in range(infos)]
    defn = parse({**BASE, "phases": [{"kind": "lobby"}, *items, {"kind": "summary"}]})
    keys = [p.key for p in expand_phases(defn)]
    per_function = len(order) + sum(len(kinds) for kinds in blocks)
    assert len(keys) == 2 + infos + per_function * len(defn.functions)
    assert len(set(keys)) == len(keys)


def test_default_definition_counts_two_of_three_as_practised() -> None:
    from app.domain.definitions import DEFAULT_DEFINITIONS_DIR, load_definition
    from app.domain.scoring import CardTally, is_practised

    definition = load_definition(DEFAULT_DEFINITIONS_DIR / "dhs-cx-maturity.yaml")
    tally = CardTally(card_id="c", level=0, do=2, dont=1, unsure=0)
    assert is_practised(tally, definition.scoring.practised_threshold) is True
