"""The paired bootstrap on cases whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from narrowgate.core.stats import paired_bootstrap


def test_identical_runs_give_zero_delta_with_a_zero_width_interval():
    scores = np.random.default_rng(1).random(200)
    result = paired_bootstrap(scores, scores.copy())
    assert (result.delta, result.ci_low, result.ci_high) == (0.0, 0.0, 0.0)
    assert result.p_value == 1.0
    assert result.n == 200


@pytest.mark.parametrize("shift", [-0.25, 0.1, 3.0])
def test_constant_shift_is_recovered_exactly(shift):
    base = np.random.default_rng(2).random(150)
    result = paired_bootstrap(base, base + shift, n_resamples=2000)
    assert result.delta == pytest.approx(shift, abs=1e-12)
    assert result.ci_low == pytest.approx(shift, abs=1e-12)
    assert result.ci_high == pytest.approx(shift, abs=1e-12)
    assert result.p_value == pytest.approx(1 / 2001)  # the smallest p this many resamples can give


def test_interval_matches_the_normal_approximation_on_a_large_sample():
    rng = np.random.default_rng(3)
    base = rng.random(4000)
    treated = base + 0.05 + rng.normal(0, 0.3, size=base.size)
    result = paired_bootstrap(base, treated, n_resamples=4000)
    diff = treated - base
    half = 1.96 * diff.std(ddof=1) / np.sqrt(diff.size)
    assert result.delta == pytest.approx(diff.mean())
    assert result.ci_low == pytest.approx(diff.mean() - half, abs=0.15 * half)
    assert result.ci_high == pytest.approx(diff.mean() + half, abs=0.15 * half)
    assert result.p_value < 0.001


def test_interval_covers_the_true_change_about_95_percent_of_the_time():
    rng = np.random.default_rng(4)
    covered, rejected = 0, 0
    trials = 200
    for trial in range(trials):
        base = rng.random(80)
        null_treated = base + rng.normal(0, 0.2, size=80)  # true change 0
        result = paired_bootstrap(base, null_treated, n_resamples=1000, seed=trial)
        covered += result.ci_low <= 0 <= result.ci_high
        rejected += result.p_value < 0.05
    assert 0.90 <= covered / trials <= 0.99
    assert 0.01 <= rejected / trials <= 0.10  # p is calibrated under the null


def test_seeded_and_reproducible():
    rng = np.random.default_rng(5)
    base, treated = rng.random(60), rng.random(60)
    assert paired_bootstrap(base, treated, seed=7) == paired_bootstrap(base, treated, seed=7)
    assert paired_bootstrap(base, treated, seed=7) != paired_bootstrap(base, treated, seed=8)


def test_pairing_matters():
    """Large between-document spread with a small consistent change: the paired interval is tight."""
    rng = np.random.default_rng(6)
    base = rng.normal(0, 5, size=300)
    result = paired_bootstrap(base, base + 0.1 + rng.normal(0, 0.01, size=300))
    assert 0.09 < result.ci_low < result.ci_high < 0.11


@pytest.mark.parametrize(
    "base, treated, message",
    [
        ([1.0, 2.0], [1.0], "equal length"),
        ([], [], "at least one"),
        ([1.0, float("nan")], [1.0, 2.0], "non-finite"),
    ],
)
def test_bad_input_is_rejected(base, treated, message):
    with pytest.raises(ValueError, match=message):
        paired_bootstrap(base, treated)


def test_ratio_of_proportional_scores_is_exact_and_zero_denominator_is_an_error():
    from narrowgate.core.stats import paired_bootstrap_ratio

    den = np.random.default_rng(2).random(50) + 0.1
    result = paired_bootstrap_ratio(2 * den, den, n_resamples=300)
    assert (result.ratio, result.ci_low, result.ci_high) == pytest.approx((2, 2, 2), abs=1e-12)
    assert result.undefined == 0 and result.n == 50
    with pytest.raises(ValueError, match="denominator's mean is 0"):
        paired_bootstrap_ratio(den, np.zeros(50))
