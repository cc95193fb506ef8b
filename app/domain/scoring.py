"""Consensus maturity scoring: the pure core (no I/O, no framework, no clock).

Levels are 0-based indexes into a definition's scale (0 = lowest, e.g. Emerging).
Every formula, rule and tie-break is explained with worked examples in docs/scoring.md.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal, get_args

__all__ = [
    "CARD_CHOICES",
    "DEFAULT_MIN_AGREEMENT",
    "DEFAULT_MIN_MODAL_SHARE",
    "DEFAULT_PRACTISED_THRESHOLD",
    "CardChoice",
    "CardLevel",
    "CardTally",
    "FunctionScore",
    "VotedLevel",
    "card_derived_level",
    "card_vote_reliability",
    "is_practised",
    "krippendorff_alpha_nominal",
    "score_function",
    "tastle_wierman",
    "voted_level",
    "workshop_score_dict",
]

CardChoice = Literal["do", "dont", "unsure"]
CARD_CHOICES: tuple[str, ...] = get_args(CardChoice)

DEFAULT_PRACTISED_THRESHOLD = 2 / 3
DEFAULT_MIN_AGREEMENT = 0.6
DEFAULT_MIN_MODAL_SHARE = 0.7

JSONDict = dict[str, Any]


def _check_scale(n_levels: int) -> None:
    if n_levels < 2:
        raise ValueError(f"a scale needs at least 2 levels, got {n_levels}")


def _check_level(level: int, n_levels: int, what: str) -> None:
    if not 0 <= level < n_levels:
        raise ValueError(f"{what} {level} is outside the scale 0..{n_levels - 1}")


def _check_threshold(threshold: float) -> None:
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def _name(level: int | None, level_names: Sequence[str] | None) -> str | None:
    if level is None or level_names is None:
        return None
    if not 0 <= level < len(level_names):
        raise ValueError(f"no name for level {level} in {list(level_names)}")
    return level_names[level]


# --- Voted level -------------------------------------------------------------------------


def tastle_wierman(counts: Sequence[int]) -> float | None:
    """Tastle-Wierman consensus, Cns = 1 + Σ pᵢ log₂(1 - |Xᵢ - μ| / d), in [0, 1].

    ``counts[i]`` is the number of voters on level ``i``; d = len(counts) - 1.
    Returns None when nobody voted.
    """
    _check_scale(len(counts))
    if any(c < 0 for c in counts):
        raise ValueError(f"counts must be non-negative, got {list(counts)}")
    n = sum(counts)
    if n == 0:
        return None
    d = len(counts) - 1
    mean = Fraction(sum(i * c for i, c in enumerate(counts)), n)  # exact: no float drift
    total = 0.0
    for i, c in enumerate(counts):
        if c == 0:
            continue  # pᵢ log₂(…) → 0 as pᵢ → 0
        arg = 1 - abs(i - mean) / d
        # |Xᵢ - μ| ≤ (1 - pᵢ)·d, so arg ≥ pᵢ > 0; the guard only protects against misuse.
        if arg <= 0:
            return 0.0
        total += c / n * math.log2(float(arg))
    return min(1.0, max(0.0, 1.0 + total))


@dataclass(frozen=True)
class VotedLevel:
    """One round of private level votes, summarised."""

    level: int | None  # lower median; None when nobody voted
    agreement: float | None  # Tastle-Wierman Cns
    modal_share: float | None
    modal_level: int | None  # lowest of tied modes
    n_voters: int
    counts: tuple[int, ...]  # votes per level, len == n_levels
    low_agreement: bool

    def to_dict(self, level_names: Sequence[str] | None = None) -> JSONDict:
        if level_names is not None and len(level_names) != len(self.counts):
            raise ValueError(f"{len(level_names)} level names for a {len(self.counts)}-level scale")
        return {
            "level": self.level,
            "level_name": _name(self.level, level_names),
            "agreement": _round(self.agreement),
            "modal_share": _round(self.modal_share),
            "modal_level": self.modal_level,
            "modal_level_name": _name(self.modal_level, level_names),
            "n_voters": self.n_voters,
            "counts": list(self.counts),
            "low_agreement": self.low_agreement,
        }


def voted_level(
    votes: Sequence[int],
    n_levels: int,
    *,
    min_agreement: float = DEFAULT_MIN_AGREEMENT,
    min_modal_share: float = DEFAULT_MIN_MODAL_SHARE,
) -> VotedLevel:
    """Summarise one round of level votes (0-based level indexes)."""
    _check_scale(n_levels)
    counts = [0] * n_levels
    for v in votes:
        _check_level(v, n_levels, "vote")
        counts[v] += 1
    n = len(votes)
    if n == 0:
        return VotedLevel(None, None, None, None, 0, tuple(counts), low_agreement=False)
    median = sorted(votes)[(n - 1) // 2]  # lower middle value when n is even
    top = max(counts)
    modal_share = top / n
    agreement = tastle_wierman(counts)
    assert agreement is not None
    return VotedLevel(
        level=median,
        agreement=agreement,
        modal_share=modal_share,
        modal_level=counts.index(top),  # first (lowest) of tied modes
        n_voters=n,
        counts=tuple(counts),
        low_agreement=agreement < min_agreement or modal_share < min_modal_share,
    )


# --- Card-derived level ------------------------------------------------------------------


@dataclass(frozen=True)
class CardTally:
    """Sort-phase votes on one practice card."""

    card_id: str
    level: int
    do: int = 0
    dont: int = 0
    unsure: int = 0

    def __post_init__(self) -> None:
        if self.level < 0 or min(self.do, self.dont, self.unsure) < 0:
            raise ValueError(f"invalid tally {self!r}")

    @classmethod
    def from_choices(cls, card_id: str, level: int, choices: Iterable[CardChoice]) -> CardTally:
        c = Counter(choices)
        if set(c) - set(CARD_CHOICES):
            raise ValueError(f"unknown card choices {sorted(set(c) - set(CARD_CHOICES))}")
        return cls(card_id, level, do=c["do"], dont=c["dont"], unsure=c["unsure"])

    @property
    def n(self) -> int:
        return self.do + self.dont + self.unsure

    @property
    def practised_share(self) -> float | None:
        """Share of "do" among all voters on the card, "unsure" included."""
        return None if self.n == 0 else self.do / self.n

    def to_dict(self, level_names: Sequence[str] | None = None) -> JSONDict:
        return {
            "card_id": self.card_id,
            "level": self.level,
            "level_name": _name(self.level, level_names),
            "do": self.do,
            "dont": self.dont,
            "unsure": self.unsure,
            "n": self.n,
            "practised_share": _round(self.practised_share),
        }


def is_practised(tally: CardTally, threshold: float = DEFAULT_PRACTISED_THRESHOLD) -> bool | None:
    """True iff do / n >= threshold; None when nobody voted on the card."""
    _check_threshold(threshold)
    share = tally.practised_share
    return None if share is None else share >= threshold


@dataclass(frozen=True)
class CardLevel:
    """Level implied by the practised cards, with a 1-based continuous score."""

    level: int | None  # None = not yet at the first level ("not yet Emerging")
    score: float  # 1-based, in [0, n_levels]: see docs/scoring.md
    practised: dict[str, bool | None]  # None = no votes and not settled
    n_cards_voted: int

    def to_dict(self, level_names: Sequence[str] | None = None) -> JSONDict:
        return {
            "level": self.level,
            "level_name": _name(self.level, level_names),
            "score": _round(self.score),
            "practised": dict(self.practised),
            "n_cards_voted": self.n_cards_voted,
        }


def card_derived_level(
    tallies: Sequence[CardTally],
    n_levels: int,
    *,
    threshold: float = DEFAULT_PRACTISED_THRESHOLD,
    settled: Mapping[str, bool] | None = None,
) -> CardLevel:
    """Highest level whose cards, and all lower levels' cards, are practised.

    ``settled`` (card_id -> practised) is the facilitator's decision and overrides the vote.
    Levels without cards neither block nor count; unvoted, unsettled cards are not practised.
    """
    _check_scale(n_levels)
    _check_threshold(threshold)
    settled = settled or {}
    ids = [t.card_id for t in tallies]
    if len(set(ids)) != len(ids):
        raise ValueError("duplicate card ids in tallies")
    if unknown := set(settled) - set(ids):
        raise ValueError(f"settled cards not in the deck: {sorted(unknown)}")
    practised: dict[str, bool | None] = {}
    by_level: dict[int, list[bool]] = {}
    for t in tallies:
        _check_level(t.level, n_levels, f"card {t.card_id!r} level")
        p = settled[t.card_id] if t.card_id in settled else is_practised(t, threshold)
        practised[t.card_id] = p
        by_level.setdefault(t.level, []).append(p is True)
    level: int | None = None
    fraction = 0.0
    for lvl in sorted(by_level):
        marks = by_level[lvl]
        if not all(marks):
            fraction = sum(marks) / len(marks)
            break
        level = lvl
    base = 0 if level is None else level + 1
    return CardLevel(
        level=level,
        score=base + fraction,
        practised=practised,
        n_cards_voted=sum(1 for t in tallies if t.n > 0),
    )


# --- Per-function record -----------------------------------------------------------------


@dataclass(frozen=True)
class FunctionScore:
    """Both signals, every round, and the facilitator's recorded outcome for one function."""

    function_id: str
    card_level: CardLevel
    voted: VotedLevel  # latest round (empty summary when no round was run)
    rounds: tuple[VotedLevel, ...]
    recorded_level: int | None
    recorded_note: str | None
    outcome_level: int | None  # the recorded level; signals are advisory

    def to_dict(self, level_names: Sequence[str] | None = None) -> JSONDict:
        return {
            "function_id": self.function_id,
            "outcome_level": self.outcome_level,
            "outcome_level_name": _name(self.outcome_level, level_names),
            "recorded_level": self.recorded_level,
            "recorded_level_name": _name(self.recorded_level, level_names),
            "recorded_note": self.recorded_note,
            "card_level": self.card_level.to_dict(level_names),
            "voted": self.voted.to_dict(level_names),
            "rounds": [r.to_dict(level_names) for r in self.rounds],
        }


def score_function(
    function_id: str,
    tallies: Sequence[CardTally],
    rounds: Sequence[Sequence[int]],
    n_levels: int,
    *,
    threshold: float = DEFAULT_PRACTISED_THRESHOLD,
    min_agreement: float = DEFAULT_MIN_AGREEMENT,
    min_modal_share: float = DEFAULT_MIN_MODAL_SHARE,
    settled: Mapping[str, bool] | None = None,
    recorded_level: int | None = None,
    recorded_note: str | None = None,
) -> FunctionScore:
    """Build a FunctionScore from card tallies and the level votes of each round, in order."""
    if recorded_level is not None:
        _check_level(recorded_level, n_levels, "recorded level")
    summaries = tuple(
        voted_level(r, n_levels, min_agreement=min_agreement, min_modal_share=min_modal_share)
        for r in rounds
    )
    return FunctionScore(
        function_id=function_id,
        card_level=card_derived_level(tallies, n_levels, threshold=threshold, settled=settled),
        voted=summaries[-1] if summaries else voted_level([], n_levels),
        rounds=summaries,
        recorded_level=recorded_level,
        recorded_note=recorded_note,
        outcome_level=recorded_level,
    )


# --- Whole-workshop reliability ----------------------------------------------------------


def krippendorff_alpha_nominal(units: Sequence[Sequence[Hashable]]) -> float | None:
    """Krippendorff's alpha for nominal data; each unit lists the values its coders gave.

    Units with fewer than 2 values are not pairable and are dropped. Returns None when alpha
    is undefined: no pairable values, or a single value throughout (expected disagreement 0).
    """
    n_c: Counter[Hashable] = Counter()
    observed = Fraction(0)  # Σ_units Σ_{c≠k} o_ck, exact
    for unit in units:
        m = len(unit)
        if m < 2:
            continue
        counts = Counter(unit)
        n_c.update(counts)
        observed += Fraction(m * m - sum(c * c for c in counts.values()), m - 1)
    n = sum(n_c.values())
    expected = n * n - sum(c * c for c in n_c.values())  # Σ_{c≠k} n_c n_k
    if expected == 0:
        return None
    return float(1 - (n - 1) * observed / expected)


def card_vote_reliability(votes_by_card: Mapping[str, Sequence[CardChoice]]) -> float | None:
    """Nominal alpha over card votes, "unsure" dropped as an abstention (missing data)."""
    units: list[list[str]] = []
    for card_id, choices in votes_by_card.items():
        if bad := set(choices) - set(CARD_CHOICES):
            raise ValueError(f"unknown choices {sorted(bad)} on card {card_id!r}")
        units.append([c for c in choices if c != "unsure"])
    return krippendorff_alpha_nominal(units)


def workshop_score_dict(
    workshop_id: str | int,
    level_names: Sequence[str],
    functions: Sequence[FunctionScore],
    krippendorff_alpha: float | None,
) -> JSONDict:
    """The body of GET /api/workshops/{id}/score (shape documented in docs/scoring.md)."""
    return {
        "workshop_id": workshop_id,
        "scale": list(level_names),
        "functions": [f.to_dict(level_names) for f in functions],
        "reliability": {"krippendorff_alpha": _round(krippendorff_alpha)},
    }
