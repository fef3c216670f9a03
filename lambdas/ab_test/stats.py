"""The statistics of an A/B test: pure Python (the Lambda ships no numpy or scipy).

- Regression: **Welch's t-test** on the per-request absolute errors of the two variants (two
  independent samples, unequal variances). The mean absolute error of each variant is the
  metric; with at least ``min_samples`` (default 200) requests per variant the central limit
  theorem makes each mean close to normal even though absolute errors are skewed, which is
  the test's assumption beside independent requests. Welch, "The generalization of
  Student's problem when several different population variances are involved" (1947).
- Classification (binary and multiclass): the **two-proportion z-test** on correctness (the
  share of requests whose predicted class is the label: accuracy), with the pooled proportion
  under the null hypothesis. Assumes independent requests and enough of both outcomes
  (n·p and n·(1-p) of at least about 5 in each variant).

The t distribution's tail is the regularized incomplete beta function, computed by its
continued fraction (Numerical Recipes, 3rd ed., section 6.4); the normal distribution is the
standard library's ``statistics.NormalDist``. scipy is the tests' oracle only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

_NORMAL = NormalDist()
_EPS = 1e-15
_TINY = 1e-300
_MAX_ITERATIONS = 400


@dataclass(frozen=True)
class TestResult:
    name: str  # "Welch's t-test" or "two-proportion z-test"
    statistic: float  # t or z: positive when the challenger's metric is the larger
    p_value: float  # two-sided
    df: float | None = None  # Welch's degrees of freedom


def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of I_x(a, b) by the modified Lentz method."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, _MAX_ITERATIONS + 1):
        m2 = 2 * m
        for numerator in (
            m * (b - m) * x / ((qam + m2) * (a + m2)),
            -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > _TINY else _TINY)
            c = 1.0 + numerator / c
            c = c if abs(c) > _TINY else _TINY
            h *= d * c
        if abs(d * c - 1.0) < _EPS:
            break
    return h


def regularized_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b), the regularized incomplete beta function, for a, b > 0 and 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    front = math.exp(log_front)
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_continued_fraction(a, b, x) / a
    return 1.0 - front * _beta_continued_fraction(b, a, 1.0 - x) / b


def t_two_sided_p(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's t with ``df`` degrees of freedom: I_{df/(df+t^2)}(df/2, 1/2)."""
    if math.isnan(t):
        return 1.0
    return regularized_beta(df / 2.0, 0.5, df / (df + t * t))


def _mean_and_variance(values: Sequence[float]) -> tuple[float, float]:
    n = len(values)
    mean = math.fsum(values) / n
    return mean, math.fsum((v - mean) ** 2 for v in values) / (n - 1)


def welch_t_test(champion: Sequence[float], challenger: Sequence[float]) -> TestResult:
    """Welch's t-test of equal means; t > 0 when the challenger's mean is the larger."""
    if len(champion) < 2 or len(challenger) < 2:
        raise ValueError("Welch's t-test needs at least 2 values per sample")
    m1, v1 = _mean_and_variance(champion)
    m2, v2 = _mean_and_variance(challenger)
    s1, s2 = v1 / len(champion), v2 / len(challenger)
    if s1 + s2 == 0.0:  # both samples constant
        return TestResult(
            "Welch's t-test",
            0.0 if m1 == m2 else math.copysign(math.inf, m2 - m1),
            1.0 if m1 == m2 else 0.0,
            float(len(champion) + len(challenger) - 2),
        )
    t = (m2 - m1) / math.sqrt(s1 + s2)
    df = (s1 + s2) ** 2 / (s1**2 / (len(champion) - 1) + s2**2 / (len(challenger) - 1))
    return TestResult("Welch's t-test", t, t_two_sided_p(t, df), df)


def two_proportion_z_test(
    champion_hits: int, champion_n: int, challenger_hits: int, challenger_n: int
) -> TestResult:
    """The pooled two-proportion z-test; z > 0 when the challenger's proportion is the larger."""
    if champion_n < 1 or challenger_n < 1:
        raise ValueError("the two-proportion z-test needs at least 1 value per sample")
    p1, p2 = champion_hits / champion_n, challenger_hits / challenger_n
    pooled = (champion_hits + challenger_hits) / (champion_n + challenger_n)
    spread = math.sqrt(pooled * (1.0 - pooled) * (1.0 / champion_n + 1.0 / challenger_n))
    if spread == 0.0:  # all right or all wrong in both
        return TestResult("two-proportion z-test", 0.0, 1.0)
    z = (p2 - p1) / spread
    return TestResult("two-proportion z-test", z, math.erfc(abs(z) / math.sqrt(2.0)))


def fixed_horizon_samples_means(
    delta: float, sd_champion: float, sd_challenger: float, alpha: float, power: float
) -> int:
    """Requests per variant a single test at ``alpha`` (two-sided) needs to detect a difference
    ``delta`` in means with ``power``: (z_{1-alpha/2} + z_{power})^2 (sd1^2 + sd2^2) / delta^2."""
    z = _NORMAL.inv_cdf(1 - alpha / 2) + _NORMAL.inv_cdf(power)
    return math.ceil(z * z * (sd_champion**2 + sd_challenger**2) / delta**2)


def fixed_horizon_samples_proportions(
    p_champion: float, p_challenger: float, alpha: float, power: float
) -> int:
    """Requests per variant for the two-proportion z-test (unpooled variance approximation)."""
    z = _NORMAL.inv_cdf(1 - alpha / 2) + _NORMAL.inv_cdf(power)
    spread = p_champion * (1 - p_champion) + p_challenger * (1 - p_challenger)
    return math.ceil(z * z * spread / (p_challenger - p_champion) ** 2)
