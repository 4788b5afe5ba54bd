"""Whether a candidate's validation gain over the seed is more than chance.

A validation set of 20-50 examples is small: on the embedded model's sentiment task, a candidate that
won 7 and lost 5 validation examples against the seed (0.82 against 0.78) lost 13 and won 9 on the test
set. So the program an optimizer returns must beat the seed on validation by a margin a paired sign
test would not put down to chance; otherwise the seed is returned and the summary says why.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from math import comb
from typing import Any

from honed.errors import ConfigError

DEFAULT_SIGNIFICANCE = 0.2


def sign_test_p(wins: int, losses: int) -> float:
    """One-sided exact sign test: the chance of at least `wins` wins in `wins + losses` fair coin tosses."""
    n = wins + losses
    if n == 0:
        return 1.0
    return sum(comb(n, k) for k in range(wins, n + 1)) / 2**n


@dataclass(frozen=True)
class Gain:
    """A candidate against the seed on the same validation examples (ties drop out of the test)."""

    wins: int
    losses: int
    mean_gain: float
    p_value: float
    significance: float

    @property
    def holds(self) -> bool:
        """The candidate scores higher, and (unless the check is off) not by chance."""
        if self.mean_gain <= 0:
            return False
        return self.significance >= 1.0 or (self.wins > self.losses and self.p_value <= self.significance)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "holds": self.holds}


def paired_gain(seed_scores: Sequence[float], candidate_scores: Sequence[float], significance: float) -> Gain:
    """Compare per-example scores on the same examples in the same order."""
    if len(seed_scores) != len(candidate_scores):
        raise ValueError(f"paired scores differ in length: {len(seed_scores)} and {len(candidate_scores)}")
    wins = sum(1 for s, c in zip(seed_scores, candidate_scores, strict=True) if c > s)
    losses = sum(1 for s, c in zip(seed_scores, candidate_scores, strict=True) if c < s)
    mean_gain = (sum(candidate_scores) - sum(seed_scores)) / len(seed_scores) if seed_scores else 0.0
    return Gain(wins, losses, mean_gain, sign_test_p(wins, losses), significance)


def check_significance(value: Any) -> float:
    """The `significance` argument, validated (1.0 turns the check off: any validation gain counts)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 < value <= 1.0:
        raise ConfigError(f"significance must be a number in (0, 1], got {value!r}")
    return float(value)
