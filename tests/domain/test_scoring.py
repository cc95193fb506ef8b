"""Scoring core: every number in docs/scoring.md is checked here, plus properties."""

from __future__ import annotations

import json
import math
import re
from collections import Counter, defaultdict
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.domain.scoring import (
    CardChoice,
    CardLevel,
    CardTally,
    VotedLevel,
    card_derived_level,
    card_vote_reliability,
    is_practised,
    krippendorff_alpha_nominal,
    score_function,
    tastle_wierman,
    voted_level,
    workshop_score_dict,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "scoring.md"
DHS = ["Emerging", "Established", "Exemplary"]


def expand(counts: tuple[int, ...]) -> list[int]:
    """Level counts -> one vote per voter."""
    return [level for level, c in enumerate(counts) for _ in range(c)]


def r4(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


# --- Tastle-Wierman -----------------------------------------------------------------------

# counts, μ, rows (Xᵢ, pᵢ, |Xᵢ-μ|/d, 1-|Xᵢ-μ|/d, log₂, pᵢ·log₂), Σ, Cns: the docs' tables.
TW_ARITHMETIC = [
    (
        (6, 15, 2),
        0.8261,
        [
            (0, 0.2609, 0.4130, 0.5870, -0.7687, -0.2005),
            (1, 0.6522, 0.0870, 0.9130, -0.1312, -0.0856),
            (2, 0.0870, 0.5870, 0.4130, -1.2756, -0.1109),
        ],
        -0.3970,
        0.6030,
    ),
    (
        (8, 8, 7),
        0.9565,
        [
            (0, 0.3478, 0.4783, 0.5217, -0.9386, -0.3265),
            (1, 0.3478, 0.0217, 0.9783, -0.0317, -0.0110),
            (2, 0.3043, 0.5217, 0.4783, -1.0641, -0.3239),
        ],
        -0.6614,
        0.3386,
    ),
    (
        (12, 0, 11),
        0.9565,
        [
            (0, 0.5217, 0.4783, 0.5217, -0.9386, -0.4897),
            (2, 0.4783, 0.5217, 0.4783, -1.0641, -0.5089),
        ],
        -0.9986,
        0.0014,
    ),
    ((2, 19, 2), 1.0, [(0, 0.0870, 0.5, 0.5, -1.0, -0.0870)], -0.1739, 0.8261),
    ((3, 1), 0.25, [(0, 0.75, 0.25, 0.75, -0.4150, -0.3113), (1, 0.25, 0.75, 0.25, -2.0, -0.5)],
     -0.8113, 0.1887),
    ((0, 3, 6, 1), 1.8, [(1, 0.3, 0.2667, 0.7333, -0.4475, -0.1342),
                         (2, 0.6, 0.0667, 0.9333, -0.0995, -0.0597),
                         (3, 0.1, 0.4, 0.6, -0.7370, -0.0737)], -0.2677, 0.7323),
]  # fmt: skip


@pytest.mark.parametrize(("counts", "mu", "rows", "total", "cns"), TW_ARITHMETIC)
def test_tastle_wierman_hand_arithmetic(counts, mu, rows, total, cns):
    n, d = sum(counts), len(counts) - 1
    mean = sum(i * c for i, c in enumerate(counts)) / n
    assert round(mean, 4) == mu
    for x, p, dev, arg, log, term in rows:
        assert round(counts[x] / n, 4) == p
        assert round(abs(x - mean) / d, 4) == dev
        assert round(1 - abs(x - mean) / d, 4) == arg
        assert round(math.log2(1 - abs(x - mean) / d), 4) == log
        assert round(counts[x] / n * math.log2(1 - abs(x - mean) / d), 4) == term
    s = sum(c / n * math.log2(1 - abs(i - mean) / d) for i, c in enumerate(counts) if c)
    assert round(s, 4) == total
    assert r4(tastle_wierman(counts)) == cns


@pytest.mark.parametrize(
    ("counts", "two_decimals"),
    [((6, 15, 2), 0.60), ((8, 8, 7), 0.34), ((12, 0, 11), 0.00)],
)
def test_tastle_wierman_reference_values(counts, two_decimals):
    assert round(tastle_wierman(counts) or -1, 2) == two_decimals


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        ((23, 0, 0), 1.0),
        ((0, 0, 1), 1.0),
        ((0, 7), 1.0),
        ((5, 5), 0.0),
        ((1, 0, 1), 0.0),
        ((1, 0, 0, 1), 0.0),
        ((1, 7, 2), 0.6605),
        ((0, 3, 6, 1), 0.7323),
        ((2, 2, 2, 2), 0.3685),
        ((0, 0, 0), None),
    ],
)
def test_tastle_wierman_cases(counts, expected):
    assert r4(tastle_wierman(counts)) == expected


@pytest.mark.parametrize("counts", [(), (4,), (1, -1, 2)])
def test_tastle_wierman_rejects_bad_counts(counts):
    with pytest.raises(ValueError):
        tastle_wierman(counts)


# --- Voted level --------------------------------------------------------------------------

# counts, (level, agreement, modal_level, modal_share, low_agreement): the docs' table.
VOTED = [
    ((6, 15, 2), (1, 0.6030, 1, 0.6522, True)),
    ((8, 8, 7), (1, 0.3386, 0, 0.3478, True)),
    ((12, 0, 11), (0, 0.0014, 0, 0.5217, True)),
    ((2, 19, 2), (1, 0.8261, 1, 0.8261, False)),
    ((1, 7, 2), (1, 0.6605, 1, 0.7, False)),
    ((23, 0, 0), (0, 1.0, 0, 1.0, False)),
    ((0, 0, 1), (2, 1.0, 2, 1.0, False)),
    ((3, 1), (0, 0.1887, 0, 0.75, True)),
    ((5, 5), (0, 0.0, 0, 0.5, True)),
    ((2, 2), (0, 0.0, 0, 0.5, True)),
    ((0, 3, 6, 1), (2, 0.7323, 2, 0.6, True)),
    ((2, 2, 2, 2), (1, 0.3685, 0, 0.25, True)),
]


@pytest.mark.parametrize(("counts", "expected"), VOTED)
def test_voted_level_table(counts, expected):
    v = voted_level(expand(counts), len(counts))
    assert (v.level, r4(v.agreement), v.modal_level, r4(v.modal_share), v.low_agreement) == (
        expected
    )
    assert v.counts == counts
    assert v.n_voters == sum(counts)


def test_voted_level_even_count_takes_lower_median():
    assert voted_level([1, 0, 1, 0], 3).level == 0
    assert voted_level([2, 1, 2, 1], 4).level == 1


@pytest.mark.parametrize("n_levels", [2, 3, 4])
def test_voted_level_no_votes(n_levels):
    assert voted_level([], n_levels) == VotedLevel(
        None, None, None, None, 0, (0,) * n_levels, low_agreement=False
    )


@pytest.mark.parametrize(
    ("votes", "kwargs", "low"),
    [
        (expand((6, 15, 2)), {"min_modal_share": 0.6}, False),
        (expand((6, 15, 2)), {"min_modal_share": 0.6, "min_agreement": 0.61}, True),
        (expand((2, 19, 2)), {"min_agreement": 0.9}, True),
    ],
)
def test_voted_level_custom_thresholds(votes, kwargs, low):
    assert voted_level(votes, 3, **kwargs).low_agreement is low


@pytest.mark.parametrize(("votes", "n_levels"), [([3], 3), ([-1], 3), ([0, 1, 2], 2), ([0], 1)])
def test_voted_level_rejects_bad_input(votes, n_levels):
    with pytest.raises(ValueError):
        voted_level(votes, n_levels)


# --- Card-derived level -------------------------------------------------------------------

DECK = [
    CardTally("E1", 0, 10, 1, 1),
    CardTally("E2", 0, 8, 2, 2),
    CardTally("E3", 0, 9, 3, 0),
    CardTally("S1", 1, 9, 2, 1),
    CardTally("S2", 1, 7, 1, 4),
    CardTally("S3", 1, 12, 0, 0),
    CardTally("X1", 2, 8, 4, 0),
    CardTally("X2", 2, 3, 8, 1),
]


@pytest.mark.parametrize(
    ("tally", "share", "practised"),
    [
        (DECK[0], 0.8333, True),
        (DECK[1], 0.6667, True),
        (DECK[2], 0.75, True),
        (DECK[3], 0.75, True),
        (DECK[4], 0.5833, False),
        (DECK[5], 1.0, True),
        (DECK[6], 0.6667, True),
        (DECK[7], 0.25, False),
        (CardTally("none", 0), None, None),
        (CardTally("unsure", 0, 0, 0, 3), 0.0, False),
    ],
)
def test_card_practised_table(tally, share, practised):
    assert r4(tally.practised_share) == share
    assert is_practised(tally) is practised


@pytest.mark.parametrize(
    ("tally", "threshold", "practised"),
    [(CardTally("c", 0, 2, 2), 0.5, True), (CardTally("c", 0, 2, 2), 0.51, False)],
)
def test_card_threshold(tally, threshold, practised):
    assert is_practised(tally, threshold) is practised


def test_card_tally_from_choices():
    choices: list[CardChoice] = ["do", "dont", "do", "unsure"]
    t = CardTally.from_choices("c", 1, choices)
    assert (t.do, t.dont, t.unsure, t.n) == (2, 1, 1, 4)
    with pytest.raises(ValueError):
        CardTally.from_choices("c", 1, ["maybe"])  # type: ignore[list-item]


@pytest.mark.parametrize(
    "make", [lambda: CardTally("c", -1), lambda: CardTally("c", 0, do=-1)], ids=["level", "count"]
)
def test_card_tally_rejects_bad_values(make):
    with pytest.raises(ValueError):
        make()


@pytest.mark.parametrize("threshold", [0.0, -0.1, 1.01])
def test_threshold_must_be_a_share(threshold):
    with pytest.raises(ValueError):
        is_practised(DECK[0], threshold)


def cards(spec: dict[int, tuple[int, int]]) -> list[CardTally]:
    """{level: (practised cards, total cards)} -> tallies, 3 voters each (3/0 or 0/3)."""
    out = []
    for level, (yes, total) in spec.items():
        for i in range(total):
            out.append(CardTally(f"L{level}-{i}", level, 3 if i < yes else 0, 0 if i < yes else 3))
    return out


@pytest.mark.parametrize(
    ("tallies", "n_levels", "settled", "level", "score"),
    [
        (DECK, 3, None, 0, 1.6667),
        (DECK, 3, {"S2": True}, 1, 2.5),
        (DECK, 3, {"S2": True, "X2": True}, 2, 3.0),
        (DECK, 3, {"E1": False}, None, 0.6667),
        (DECK, 3, {"S2": True, "X1": False}, 1, 2.0),
        (cards({0: (1, 3), 1: (3, 3)}), 3, None, None, 0.3333),
        (cards({0: (0, 3), 1: (2, 2)}), 3, None, None, 0.0),
        ([CardTally("a", 0), CardTally("b", 1)], 3, None, None, 0.0),
        ([], 3, None, None, 0.0),
        (cards({0: (2, 2), 1: (1, 1), 3: (1, 2)}), 4, None, 1, 2.5),
        (cards({0: (2, 2), 1: (1, 1), 3: (2, 2)}), 4, None, 3, 4.0),
        (cards({0: (2, 2), 3: (0, 2)}), 4, None, 0, 1.0),
        (cards({1: (1, 2)}), 3, None, None, 0.5),
        (cards({0: (2, 2), 1: (1, 4)}), 2, None, 0, 1.25),
        (cards({0: (2, 2), 1: (3, 3)}), 3, None, 1, 2.0),
        ([CardTally("a", 0)], 3, {"a": True}, 0, 1.0),
    ],
)
def test_card_derived_level_table(tallies, n_levels, settled, level, score):
    result = card_derived_level(tallies, n_levels, settled=settled)
    assert (result.level, r4(result.score)) == (level, score)


def test_card_derived_level_practised_map():
    result = card_derived_level([*DECK, CardTally("new", 2)], 3, settled={"S2": True})
    assert result.practised == {
        "E1": True, "E2": True, "E3": True, "S1": True, "S2": True, "S3": True,
        "X1": True, "X2": False, "new": None,
    }  # fmt: skip
    assert result.n_cards_voted == 8


def test_card_derived_level_threshold():
    assert card_derived_level(DECK, 3, threshold=0.5).level == 1
    assert card_derived_level(DECK, 3, threshold=0.8).level is None


@pytest.mark.parametrize(
    ("tallies", "n_levels", "settled"),
    [
        ([CardTally("a", 0), CardTally("a", 1)], 3, None),
        ([CardTally("a", 0)], 3, {"b": True}),
        ([CardTally("a", 3)], 3, None),
        ([CardTally("a", 0)], 1, None),
    ],
)
def test_card_derived_level_rejects_bad_input(tallies, n_levels, settled):
    with pytest.raises(ValueError):
        card_derived_level(tallies, n_levels, settled=settled)


# --- Function score and JSON --------------------------------------------------------------

ROUNDS = [expand((6, 15, 2)), expand((2, 19, 2))]
NOTE = "Established: we measure in pockets, not yet everywhere."


def docs_example() -> dict[str, object]:
    measurement = score_function(
        "measurement", DECK, ROUNDS, 3, settled={"S2": True}, recorded_level=1, recorded_note=NOTE
    )
    not_run = score_function(
        "customer-understanding", [CardTally("CU1", 0), CardTally("CU2", 1)], [], 3
    )
    votes = {t.card_id: ["do"] * t.do + ["dont"] * t.dont + ["unsure"] * t.unsure for t in DECK}
    alpha = card_vote_reliability(votes)  # type: ignore[arg-type]
    return workshop_score_dict("w-42", DHS, [measurement, not_run], alpha)


def test_json_shape_matches_docs():
    blocks = re.findall(r"```json\n(.*?)```", DOCS.read_text(encoding="utf-8"), re.S)
    assert len(blocks) == 1
    assert json.loads(json.dumps(docs_example())) == json.loads(blocks[0])


def test_score_function_outcome_is_the_recorded_level():
    f = score_function("m", DECK, ROUNDS, 3, recorded_level=2)
    assert (f.outcome_level, f.card_level.level, f.voted.level) == (2, 0, 1)
    assert f.voted == f.rounds[-1] == voted_level(ROUNDS[1], 3)
    assert f.rounds[0].low_agreement and not f.rounds[1].low_agreement
    unrecorded = score_function("m", DECK, ROUNDS, 3)
    assert unrecorded.outcome_level is None and unrecorded.recorded_note is None


def test_score_function_passes_thresholds():
    f = score_function("m", DECK, ROUNDS[:1], 3, threshold=0.5, min_modal_share=0.6)
    assert f.card_level.level == 1 and not f.voted.low_agreement


@pytest.mark.parametrize("recorded", [-1, 3])
def test_score_function_rejects_recorded_level_off_scale(recorded):
    with pytest.raises(ValueError):
        score_function("m", DECK, ROUNDS, 3, recorded_level=recorded)


def test_to_dict_without_names_and_with_wrong_names():
    v = voted_level([0, 1, 1], 3)
    assert v.to_dict()["level_name"] is None and v.to_dict(DHS)["level_name"] == "Established"
    with pytest.raises(ValueError):
        v.to_dict(["A", "B"])
    with pytest.raises(ValueError):
        CardLevel(2, 3.0, {}, 0).to_dict(["A", "B"])
    assert DECK[4].to_dict(DHS) == {
        "card_id": "S2", "level": 1, "level_name": "Established", "do": 7, "dont": 1,
        "unsure": 4, "n": 12, "practised_share": 0.5833,
    }  # fmt: skip


# --- Krippendorff's alpha -----------------------------------------------------------------


def parse(rows: list[str]) -> list[list[str]]:
    """Coder rows (space separated, * = missing) -> units (lists of values)."""
    table = [r.split() for r in rows]
    return [[row[u] for row in table if row[u] != "*"] for u in range(len(table[0]))]


KRIPPENDORFF_2011 = parse([
    "1 2 3 3 2 1 4 1 2 * * *",
    "1 2 3 3 2 2 4 1 2 5 * 3",
    "* 3 3 3 2 3 4 2 2 5 1 *",
    "1 2 3 3 2 4 4 1 2 5 1 *",
])  # fmt: skip
WIKIPEDIA = parse([
    "* * * * * 3 4 1 2 1 1 3 3 * 3",
    "1 * 2 1 3 3 4 3 * * * * * * *",
    "* * 2 1 3 4 4 * 2 1 1 3 3 * 4",
])  # fmt: skip
SMALL = [["do"] * 4, ["do", "do", "dont"], ["dont", "dont", "dont", "do"]]


@pytest.mark.parametrize(
    ("units", "alpha"),
    [
        (KRIPPENDORFF_2011, 0.743),
        (WIKIPEDIA, 0.691),
        (SMALL, 0.286),
        ([["a", "b"]], 0.0),
        ([["a", "a"], ["b", "b"]], 1.0),
        ([["a", "b"], ["a", "b"], ["a", "b"]], -0.667),
        ([["a", "a", "a"], ["a", "a"]], None),
        ([["a"], ["b"], []], None),
        ([], None),
    ],
)
def test_krippendorff_alpha_table(units, alpha):
    result = krippendorff_alpha_nominal(units)
    assert (None if result is None else round(result, 3)) == alpha


def coincidences(units: list[list[str]]) -> dict[tuple[str, str], Fraction]:
    """Textbook coincidence matrix: every ordered pair of values within a unit, / (m_u - 1)."""
    o: defaultdict[tuple[str, str], Fraction] = defaultdict(Fraction)
    for unit in units:
        m = len(unit)
        for i, c in enumerate(unit):
            for j, k in enumerate(unit):
                if i != j:
                    o[c, k] += Fraction(1, m - 1)
    return o


@pytest.mark.parametrize(
    ("unit", "contribution"),
    [
        (["2", "2", "3", "2"], 2),
        (["1", "2", "3", "4"], 4),
        (["1", "1", "2", "1"], 2),
        (["do"] * 4, 0),
        (["do", "do", "dont"], 2),
        (["dont", "dont", "dont", "do"], 2),
    ],
)
def test_unit_disagreement_contributions(unit, contribution):
    m, counts = len(unit), Counter(unit)
    by_formula = Fraction(m * m - sum(c * c for c in counts.values()), m - 1)
    by_pairs = sum(v for (c, k), v in coincidences([unit]).items() if c != k)
    assert by_formula == by_pairs == contribution


def test_small_example_totals():
    n_c = Counter(v for unit in SMALL for v in unit)
    assert (sum(n_c.values()), n_c["do"], n_c["dont"]) == (11, 7, 4)
    assert 11 * 11 - (7 * 7 + 4 * 4) == 56


def test_krippendorff_2011_hand_arithmetic():
    o = coincidences(KRIPPENDORFF_2011)
    n_c_exact: defaultdict[str, Fraction] = defaultdict(Fraction)
    for (c, _), v in o.items():
        n_c_exact[c] += v
    assert all(v.denominator == 1 for v in n_c_exact.values())
    n_c = {c: int(v) for c, v in n_c_exact.items()}
    n = sum(n_c.values())
    assert n == 40
    assert n_c == {"1": 9, "2": 13, "3": 10, "4": 5, "5": 3}
    disagreement = sum(v for (c, k), v in o.items() if c != k)
    assert disagreement == 8 and disagreement / n == Fraction(1, 5)
    expected = sum(n_c[c] * n_c[k] for c in n_c for k in n_c if c != k)
    assert expected == 1600 - 384 == 1216
    assert round(expected / (n * (n - 1)), 4) == 0.7795
    alpha = 1 - (disagreement / n) / Fraction(expected, n * (n - 1))
    assert float(alpha) == pytest.approx(krippendorff_alpha_nominal(KRIPPENDORFF_2011))
    small = coincidences(SMALL)
    assert sum(v for (c, k), v in small.items() if c != k) == 4
    assert round(1 - 10 * 4 / 56, 4) == round(krippendorff_alpha_nominal(SMALL) or 9, 4) == 0.2857


def test_card_vote_reliability_drops_unsure():
    votes: dict[str, list[CardChoice]] = {
        "A": ["do", "do", "do", "do"],
        "B": ["do", "do", "dont", "unsure"],
        "C": ["dont", "dont", "dont", "do"],
    }
    assert card_vote_reliability(votes) == krippendorff_alpha_nominal(SMALL)
    assert card_vote_reliability({"A": ["do", "unsure"], "B": ["unsure"] * 3}) is None
    assert card_vote_reliability({"A": ["do", "do"], "B": ["do", "do", "do"]}) is None
    with pytest.raises(ValueError):
        card_vote_reliability({"A": ["do", "yes"]})  # type: ignore[list-item]


# --- Properties ---------------------------------------------------------------------------


@st.composite
def level_votes(draw: st.DrawFn) -> tuple[int, list[int]]:
    n_levels = draw(st.integers(2, 6))
    return n_levels, draw(st.lists(st.integers(0, n_levels - 1), max_size=60))


@given(level_votes())
def test_agreement_in_unit_interval(case):
    n_levels, votes = case
    v = voted_level(votes, n_levels)
    assert v.agreement is None or 0.0 <= v.agreement <= 1.0
    assert (v.agreement is None) == (votes == [])


@given(level_votes(), st.randoms())
def test_voted_level_independent_of_voter_order(case, rnd):
    n_levels, votes = case
    shuffled = list(votes)
    rnd.shuffle(shuffled)
    assert voted_level(shuffled, n_levels) == voted_level(votes, n_levels)


@given(st.integers(2, 7), st.data(), st.integers(1, 100))
def test_unanimity_gives_one(n_levels, data, n):
    level = data.draw(st.integers(0, n_levels - 1))
    v = voted_level([level] * n, n_levels)
    assert (v.level, v.agreement, v.modal_share, v.low_agreement) == (level, 1.0, 1.0, False)


@given(level_votes())
def test_median_within_vote_range(case):
    n_levels, votes = case
    v = voted_level(votes, n_levels)
    if votes:
        assert v.level is not None and min(votes) <= v.level <= max(votes)
        assert v.modal_level is not None and v.counts[v.modal_level] == max(v.counts)
        assert v.n_voters == sum(v.counts) == len(votes)


@st.composite
def decks(draw: st.DrawFn) -> tuple[int, list[CardTally], dict[str, bool]]:
    n_levels = draw(st.integers(2, 5))
    count = st.integers(0, 5)
    tallies = [
        CardTally(
            f"c{i}", draw(st.integers(0, n_levels - 1)), draw(count), draw(count), draw(count)
        )
        for i in range(draw(st.integers(0, 12)))
    ]
    ids = [t.card_id for t in tallies]
    settled = draw(st.dictionaries(st.sampled_from(ids), st.booleans())) if ids else {}
    return n_levels, tallies, settled


@given(decks())
def test_card_score_in_range_and_consistent_with_level(deck):
    n_levels, tallies, settled = deck
    result = card_derived_level(tallies, n_levels, settled=settled)
    assert 0.0 <= result.score <= n_levels
    if result.level is None:
        assert result.score < 1.0
    else:
        assert result.level + 1 <= result.score < result.level + 2


@given(decks(), st.data())
def test_card_score_monotone_in_practised_cards(deck, data):
    n_levels, tallies, settled = deck
    before = card_derived_level(tallies, n_levels, settled=settled)
    not_practised = [c for c, p in before.practised.items() if p is not True]
    if not not_practised:
        return
    card = data.draw(st.sampled_from(not_practised))
    after = card_derived_level(tallies, n_levels, settled={**settled, card: True})
    assert after.score >= before.score
    assert (after.level if after.level is not None else -1) >= (
        before.level if before.level is not None else -1
    )


units_strategy = st.lists(st.lists(st.sampled_from("abc"), max_size=6), max_size=10)


@given(units_strategy)
def test_alpha_bounded_when_defined(units):
    alpha = krippendorff_alpha_nominal(units)
    assert alpha is None or -1.0 <= alpha <= 1.0


@given(units_strategy, st.randoms())
def test_alpha_independent_of_unit_and_coder_order(units, rnd):
    shuffled = [rnd.sample(u, len(u)) for u in units]
    rnd.shuffle(shuffled)
    assert krippendorff_alpha_nominal(shuffled) == krippendorff_alpha_nominal(units)
