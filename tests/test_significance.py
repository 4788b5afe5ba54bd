"""The paired sign test that decides whether a compiled program may replace the seed."""

from __future__ import annotations

import pytest

from honed.errors import ConfigError
from honed.optimizers.significance import check_significance, paired_gain, sign_test_p


def test_sign_test_p_is_the_binomial_tail():
    assert sign_test_p(0, 0) == 1.0
    assert sign_test_p(4, 0) == 1 / 16
    assert sign_test_p(7, 5) == pytest.approx(1586 / 4096)  # 0.387: what a 0.78 -> 0.82 validation gain was
    assert sign_test_p(0, 3) == 1.0


def test_paired_gain_counts_wins_and_losses_and_ignores_ties():
    gain = paired_gain([1, 0, 0, 1, 0.5], [1, 1, 1, 0, 0.5], significance=0.2)
    assert (gain.wins, gain.losses) == (2, 1)
    assert gain.mean_gain == pytest.approx(0.2)
    assert gain.p_value == 0.5 and not gain.holds


def test_a_clear_gain_holds_and_a_loss_never_does():
    assert paired_gain([0] * 6, [1] * 6, significance=0.2).holds
    assert not paired_gain([1] * 6, [0] * 6, significance=1.0).holds
    assert paired_gain([0, 1, 0], [1, 0, 1], significance=1.0).holds  # the check off: any gain counts


def test_paired_scores_must_line_up():
    with pytest.raises(ValueError, match="differ in length"):
        paired_gain([1, 0], [1], significance=0.2)


@pytest.mark.parametrize("bad", [0, -0.1, 1.5, "0.2", True, None])
def test_significance_is_validated(bad):
    with pytest.raises(ConfigError, match="significance must be a number"):
        check_significance(bad)
