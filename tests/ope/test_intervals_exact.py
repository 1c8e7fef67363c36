"""The interval formulas, endpoint by endpoint on small cases: normal and t quantiles against
their table values, the empirical Bernstein half-width against its closed form, the bootstrap's
percentile levels, and each formula's guard for too few decisions or replicates."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ope.intervals import (
    bernstein_interval,
    bootstrap_interval,
    check_alpha,
    delta_se,
    normal_interval,
    t_interval,
)
from ope.moments import BootstrapSums, Moments

Z_975 = 1.959963984540054  # standard normal 0.975 quantile
Z_95 = 1.6448536269514722  # standard normal 0.95 quantile
T_975_DF1 = 12.706204736174707  # Student's t 0.975 quantile, 1 degree of freedom
T_975_DF4 = 2.7764451051977987  # ... 4 degrees of freedom


@pytest.mark.parametrize("alpha", [0.0, 1.0, 1.5, -0.1, True, False, "0.05", None, math.nan])
def test_check_alpha_refuses_values_outside_the_open_unit_interval(alpha: object) -> None:
    with pytest.raises(ValueError, match=r"alpha must be in \(0, 1\); got "):
        check_alpha(alpha)  # type: ignore[arg-type]


def test_check_alpha_returns_a_float() -> None:
    assert check_alpha(0.05) == 0.05
    assert type(check_alpha(1 / 3)) is float


def test_delta_se_is_the_standard_error_of_the_mean_from_two_decisions_on() -> None:
    assert delta_se(Moments.of(np.array([[3.0]])), np.ones(1)) == math.inf
    # z = 1, 3: sample variance 2, se = sqrt(2 / 2) = 1
    assert delta_se(Moments.of(np.array([[1.0], [3.0]])), np.ones(1)) == pytest.approx(1.0)
    # z = 0, 1, 2, 5: sample variance 14/3, se = sqrt(14 / 12)
    z = np.array([[0.0], [1.0], [2.0], [5.0]])
    assert delta_se(Moments.of(z), np.ones(1)) == pytest.approx(math.sqrt(14 / 12), rel=1e-12)


def test_delta_se_pads_a_short_gradient_with_zeros() -> None:
    z = np.array([[1.0, 10.0], [3.0, -4.0], [5.0, 7.0]])  # first column: variance 4
    assert delta_se(Moments.of(z), np.ones(1)) == pytest.approx(math.sqrt(4 / 3), rel=1e-12)
    gradient = np.array([2.0, 0.0])  # 2 * column 0: variance 16
    assert delta_se(Moments.of(z), gradient) == pytest.approx(math.sqrt(16 / 3), rel=1e-12)


@pytest.mark.parametrize(("alpha", "q"), [(0.05, Z_975), (0.1, Z_95)])
def test_normal_interval_endpoints(alpha: float, q: float) -> None:
    lo, hi = normal_interval(0.4, 0.05, alpha)
    assert lo == pytest.approx(0.4 - q * 0.05, rel=1e-12)
    assert hi == pytest.approx(0.4 + q * 0.05, rel=1e-12)


@pytest.mark.parametrize(("n", "q"), [(2, T_975_DF1), (5, T_975_DF4)])
def test_t_interval_uses_n_minus_one_degrees_of_freedom(n: int, q: float) -> None:
    lo, hi = t_interval(0.4, 0.05, n, 0.05)
    assert lo == pytest.approx(0.4 - q * 0.05, rel=1e-9)
    assert hi == pytest.approx(0.4 + q * 0.05, rel=1e-9)


def test_t_interval_is_unbounded_for_one_decision() -> None:
    assert t_interval(0.4, 0.05, 1, 0.05) == (-math.inf, math.inf)


def bernstein_half_width(variance: float, n: int, term_range: float, alpha: float) -> float:
    """Maurer & Pontil (2009), Theorem 4, two-sided: δ = α, ln(4/α)."""
    log_term = math.log(4.0 / alpha)
    return math.sqrt(2 * variance * log_term / n) + 7 * term_range * log_term / (3 * (n - 1))


@pytest.mark.parametrize(
    ("variance", "n", "term_range", "alpha"),
    [(0.04, 10, 1.0, 0.05), (0.25, 2, 3.0, 0.1), (2.5, 50, 8.0, 0.01)],
)
def test_bernstein_half_width_is_the_closed_form(
    variance: float, n: int, term_range: float, alpha: float
) -> None:
    half = bernstein_half_width(variance, n, term_range, alpha)
    lo, hi = bernstein_interval(0.5, variance, n, term_range, alpha)
    assert lo == pytest.approx(0.5 - half, rel=1e-12)
    assert hi == pytest.approx(0.5 + half, rel=1e-12)


def test_bernstein_interval_by_hand_for_ten_terms() -> None:
    # ln(80) = 4.382026634673881; sqrt(2 * 0.04 * ln 80 / 10) = 0.1872330; 7 ln 80 / 27 = 1.1360810
    lo, hi = bernstein_interval(0.5, 0.04, 10, 1.0, 0.05)
    assert hi - 0.5 == pytest.approx(0.187233045 + 1.136080979, abs=1e-8)
    assert 0.5 - lo == pytest.approx(hi - 0.5, rel=1e-12)


def test_bernstein_interval_is_unbounded_for_one_decision() -> None:
    assert bernstein_interval(0.5, 0.0, 1, 1.0, 0.05) == (-math.inf, math.inf)


def replicates(means: list[float]) -> BootstrapSums:
    """Bootstrap sums whose replicates have exactly these means (count 1 each; NaN: empty)."""
    values = np.array(means, dtype=float)
    counts = np.where(np.isnan(values), 0.0, 1.0)
    return BootstrapSums(np.nan_to_num(values)[:, None], counts, seed=0)


def test_bootstrap_interval_is_the_alpha_over_two_percentiles() -> None:
    sums = replicates([float(v) for v in range(101)])  # percentiles read off directly
    assert bootstrap_interval(sums, lambda m: float(m[0]), 0.1) == pytest.approx((5.0, 95.0))
    assert bootstrap_interval(sums, lambda m: float(m[0]), 0.2) == pytest.approx((10.0, 90.0))
    assert bootstrap_interval(sums, lambda m: 2 * float(m[0]), 0.1) == pytest.approx((10.0, 190.0))


def test_bootstrap_interval_drops_empty_replicates_and_needs_two() -> None:
    assert bootstrap_interval(replicates([1.0]), lambda m: float(m[0]), 0.1) == (
        -math.inf,
        math.inf,
    )
    assert bootstrap_interval(replicates([1.0, math.nan]), lambda m: float(m[0]), 0.1) == (
        -math.inf,
        math.inf,
    )
    lo, hi = bootstrap_interval(replicates([1.0, math.nan, 3.0]), lambda m: float(m[0]), 0.5)
    assert (lo, hi) == pytest.approx((1.5, 2.5))  # the 25th and 75th percentiles of {1, 3}
