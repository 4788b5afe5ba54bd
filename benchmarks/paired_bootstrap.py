"""Paired bootstrap confidence intervals for test-score differences between two optimizers.

Why paired: both programs answer the same test examples, so the uncertainty that matters is in the
per-example differences, not in each score alone. Why bootstrap: scores are means of 0/1 (or [0, 1])
per-example scores on ~100 examples, and the mean over tasks averages tasks of different difficulty;
resampling examples within each task handles both without a distributional assumption.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

DEFAULT_LEVEL = 0.9
DEFAULT_RESAMPLES = 2000


@dataclass(frozen=True)
class Difference:
    """`a - b` on the same examples: the observed difference and its bootstrap interval."""

    diff: float
    low: float
    high: float
    level: float
    n: int

    def to_json(self) -> dict[str, Any]:
        return {key: round(value, 4) if isinstance(value, float) else value for key, value in asdict(self).items()}


def _percentile(sorted_values: list[float], q: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


def paired_difference(tasks_a: Sequence[Sequence[float]], tasks_b: Sequence[Sequence[float]], *,
                      level: float = DEFAULT_LEVEL, resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> Difference:
    """The difference of mean-over-tasks scores, `a - b`, with a paired bootstrap interval.

    `tasks_a[t][i]` and `tasks_b[t][i]` are the two programs' scores on example `i` of task `t` (one task
    for a per-task interval). Each resample draws every task's examples with replacement, the same
    indices for both programs, and averages the per-task mean differences.
    """
    if len(tasks_a) != len(tasks_b) or not tasks_a:
        raise ValueError("paired_difference needs the same, non-empty list of tasks for both programs")
    diffs = []
    for a, b in zip(tasks_a, tasks_b, strict=True):
        if len(a) != len(b) or not a:
            raise ValueError(f"paired scores must cover the same examples, got {len(a)} and {len(b)}")
        diffs.append([x - y for x, y in zip(a, b, strict=True)])
    observed = statistics.fmean(statistics.fmean(d) for d in diffs)
    rng = random.Random(seed)
    draws = []
    for _ in range(resamples):
        total = 0.0
        for d in diffs:
            total += sum(d[rng.randrange(len(d))] for _ in range(len(d))) / len(d)
        draws.append(total / len(diffs))
    draws.sort()
    tail = (1 - level) / 2
    return Difference(observed, _percentile(draws, tail), _percentile(draws, 1 - tail), level,
                      sum(len(d) for d in diffs))
