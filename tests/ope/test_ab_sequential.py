"""The confidence sequence (mixture SPRT): its radius is the inversion of the mSPRT statistic,
τ² is tuned to the planned horizon, it keeps its error rate under every-look peeking of a null
random walk where the fixed-horizon interval does not, and it refuses bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ope.ab_sequential import (
    confidence_sequence,
    mixture_radius,
    msprt_statistic,
    tau2_for_horizon,
)


@pytest.mark.parametrize(("variance", "tau2"), [(0.01, 0.1), (1.0, 1.0), (2.0, 0.05)])
def test_radius_is_where_the_statistic_reaches_one_over_alpha(variance: float, tau2: float) -> None:
    radius = mixture_radius(variance, tau2=tau2, alpha=0.05)
    assert msprt_statistic(radius, variance, tau2=tau2) == pytest.approx(20.0)
    assert msprt_statistic(0.99 * radius, variance, tau2=tau2) < 20.0
    interval = confidence_sequence(0.3, variance, tau2=tau2, alpha=0.05)
    assert (interval.lo, interval.hi) == pytest.approx((0.3 - radius, 0.3 + radius))


def test_tau2_makes_the_radius_smallest_at_the_horizon() -> None:
    tau2 = tau2_for_horizon(0.5, alpha=0.05)
    best = mixture_radius(0.5, tau2=tau2, alpha=0.05)
    for other in (tau2 / 3, tau2 * 3):
        assert mixture_radius(0.5, tau2=other, alpha=0.05) > best
    assert best > 1.96 * math.sqrt(0.5)  # the price of looking at any time


def test_running_interval_intersects_the_earlier_looks() -> None:
    looks = [(-1.0, 2.0), (0.5, 3.0)]
    interval = confidence_sequence(1.0, 0.25, tau2=0.3, alpha=0.05, earlier=looks)
    assert interval.running_lo == max(interval.lo, 0.5)
    assert interval.running_hi == min(interval.hi, 2.0)
    assert interval.looks == 3 and interval.rejects_null


def test_error_rate_under_peeking_every_step_of_a_null_random_walk() -> None:
    rng = np.random.default_rng(3)
    runs, steps = 1000, 200
    sums = np.cumsum(rng.normal(0.0, 1.0, size=(runs, steps)), axis=1)
    n = np.arange(1, steps + 1)
    estimate, variance = sums / n, 1.0 / n
    tau2 = tau2_for_horizon(1.0 / steps, alpha=0.05)
    radius = np.array([mixture_radius(v, tau2=tau2, alpha=0.05) for v in variance])
    sequential = (np.abs(estimate) > radius).any(axis=1).mean()
    fixed = (np.abs(estimate) > 1.96 * np.sqrt(variance)).any(axis=1).mean()
    assert sequential <= 0.05 + 0.02  # Ville: at most α, up to Monte Carlo error
    assert fixed > 0.2  # peeking at a fixed-horizon interval 200 times


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: mixture_radius(1.0, tau2=0.0, alpha=0.05), "tau2 .* positive number"),
        (lambda: mixture_radius(1.0, tau2=1.0, alpha=1.0), r"alpha must be in \(0, 1\)"),
        (lambda: mixture_radius(-1.0, tau2=1.0, alpha=0.05), "variance must be >= 0"),
        (lambda: msprt_statistic(0.1, 0.0, tau2=1.0), "variance must be > 0"),
        (lambda: tau2_for_horizon(0.0, alpha=0.05), "variance expected at the horizon"),
        (lambda: tau2_for_horizon(math.nan, alpha=0.05), "variance expected at the horizon"),
    ],
)
def test_bad_input_is_refused(call: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()  # type: ignore[operator]
