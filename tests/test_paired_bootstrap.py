"""The benchmarks' paired bootstrap interval: centred on the observed difference, paired, seeded."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from paired_bootstrap import paired_difference  # noqa: E402


def test_identical_programs_differ_by_exactly_zero():
    scores = [1.0, 0.0, 1.0, 1.0, 0.0]
    difference = paired_difference([scores], [scores])
    assert (difference.diff, difference.low, difference.high) == (0.0, 0.0, 0.0)


def test_interval_holds_the_observed_difference_and_excludes_zero_for_a_clear_win():
    better = [1.0] * 40 + [0.0] * 10
    worse = [1.0] * 20 + [0.0] * 30
    difference = paired_difference([better], [worse], seed=1)
    assert difference.diff == pytest.approx(0.4)
    assert 0.0 < difference.low <= 0.4 <= difference.high
    assert difference.n == 50 and difference.level == 0.9


def test_pairing_narrows_the_interval_when_both_fail_the_same_examples():
    # a wins exactly one extra example out of 100 and otherwise agrees with b: a paired interval is tight
    b = [1.0] * 50 + [0.0] * 50
    a = [1.0] * 51 + [0.0] * 49
    difference = paired_difference([a], [b])
    assert difference.high - difference.low <= 0.04


def test_mean_over_tasks_weights_tasks_equally():
    difference = paired_difference([[1.0, 1.0], [0.0] * 10], [[0.0, 0.0], [0.0] * 10])
    assert difference.diff == pytest.approx(0.5)


def test_mismatched_examples_are_refused():
    with pytest.raises(ValueError, match="same examples"):
        paired_difference([[1.0, 0.0]], [[1.0]])
