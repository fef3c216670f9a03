"""The A/B test's statistics (lambdas/ab_test/stats.py) against scipy, the oracle."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from types import ModuleType

import pytest
from scipy import special
from scipy import stats as scipy_stats


@pytest.fixture
def stats(load_lambda: Callable[..., list[ModuleType]]) -> ModuleType:
    (module,) = load_lambda("ab_test", "stats")
    return module


@pytest.mark.parametrize(
    ("a", "b", "x"),
    [(0.5, 0.5, 0.3), (2.0, 0.5, 0.99), (50.0, 0.5, 0.2), (1000.0, 0.5, 0.999), (3.0, 7.0, 0.5)],
)
def test_regularized_beta_is_scipys(stats: ModuleType, a: float, b: float, x: float) -> None:
    assert stats.regularized_beta(a, b, x) == pytest.approx(special.betainc(a, b, x), rel=1e-10)


@pytest.mark.parametrize(("t", "df"), [(0.0, 5.0), (1.3, 3.7), (-2.5, 40.2), (4.0, 398.6)])
def test_t_tail_is_scipys(stats: ModuleType, t: float, df: float) -> None:
    expected = 2 * scipy_stats.t.sf(abs(t), df)
    assert stats.t_two_sided_p(t, df) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_welch_is_scipys_welch(stats: ModuleType, seed: int) -> None:
    rng = random.Random(seed)
    a = [abs(rng.gauss(0, 2.0)) for _ in range(150)]
    b = [abs(rng.gauss(0.3, 1.2)) for _ in range(230)]
    ours = stats.welch_t_test(a, b)
    theirs = scipy_stats.ttest_ind(b, a, equal_var=False)
    assert ours.statistic == pytest.approx(theirs.statistic, rel=1e-12)
    assert ours.p_value == pytest.approx(theirs.pvalue, rel=1e-9)
    assert ours.name == "Welch's t-test"


def test_welch_of_constant_samples(stats: ModuleType) -> None:
    assert stats.welch_t_test([1.0, 1.0], [1.0, 1.0]).p_value == 1.0
    assert stats.welch_t_test([1.0, 1.0], [2.0, 2.0]).p_value == 0.0
    with pytest.raises(ValueError, match="at least 2"):
        stats.welch_t_test([1.0], [1.0, 2.0])


def test_two_proportions_is_the_pooled_z_test(stats: ModuleType) -> None:
    # 160/200 right against 130/200: pooled p 0.725
    result = stats.two_proportion_z_test(130, 200, 160, 200)
    pooled = 290 / 400
    z = (0.8 - 0.65) / math.sqrt(pooled * (1 - pooled) * (2 / 200))
    assert result.statistic == pytest.approx(z, rel=1e-12)
    assert result.p_value == pytest.approx(2 * scipy_stats.norm.sf(z), rel=1e-9)
    assert stats.two_proportion_z_test(200, 200, 200, 200).p_value == 1.0


def test_fixed_horizon_sample_sizes(stats: ModuleType) -> None:
    # the textbook case: a difference of one standard deviation (sd 1 in both), alpha 0.05,
    # power 0.8: 2 * (1.95996 + 0.84162)^2 = 15.7 -> 16 per group
    assert stats.fixed_horizon_samples_means(1.0, 1.0, 1.0, 0.05, 0.8) == 16
    z = scipy_stats.norm.ppf(0.975) + scipy_stats.norm.ppf(0.9)
    expected = math.ceil(z * z * (0.7 * 0.3 + 0.75 * 0.25) / 0.05**2)
    assert stats.fixed_horizon_samples_proportions(0.7, 0.75, 0.05, 0.9) == expected
