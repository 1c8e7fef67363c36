"""Confidence intervals for an estimate V = f(z̄) from its mergeable statistics.

- ``normal`` and ``t``: V ± q · se, se² = ∇fᵀ Σ̂ ∇f / n (the delta method; for estimators that
  are a plain mean, ∇f = 1 and se is the usual standard error). q is the normal quantile, or
  Student's t with n − 1 degrees of freedom.
- ``bernstein``: the empirical Bernstein bound of Maurer & Pontil (2009, Theorem 4), a
  finite-sample guarantee for a mean of i.i.d. terms in a known range R: with probability at
  least 1 − δ, |z̄ − E z| ≤ √(2 V̂ ln(4/δ) / n) + 7 R ln(4/δ) / (3 (n − 1)) (δ/2 per side).
  It needs terms with a known range, so it is offered for estimators that are a plain mean of
  bounded per-decision terms, given bounds on the reward and on the importance weight.
- ``bootstrap``: the percentile interval of Poisson-bootstrap replicates of f(z̄).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from statistics import NormalDist

import numpy as np

from ope.moments import BootstrapSums, Moments

INTERVALS = ("normal", "t", "bernstein", "bootstrap")


def check_alpha(alpha: float) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1); got {alpha!r}")
    return float(alpha)


def delta_se(moments: Moments, gradient: np.ndarray) -> float:
    """Standard error of f(z̄) by the delta method; inf with fewer than two decisions."""
    if moments.n < 2:
        return math.inf
    g = np.pad(gradient, (0, moments.dim - gradient.size))
    variance = float(g @ moments.covariance() @ g) / moments.n
    return math.sqrt(max(variance, 0.0))


def normal_interval(value: float, se: float, alpha: float) -> tuple[float, float]:
    q = NormalDist().inv_cdf(1.0 - alpha / 2.0)
    return value - q * se, value + q * se


def t_interval(value: float, se: float, n: int, alpha: float) -> tuple[float, float]:
    from scipy import stats  # ~0.5 s to import: only when a t interval is asked for

    if n < 2:
        return -math.inf, math.inf
    q = float(stats.t.ppf(1.0 - alpha / 2.0, df=n - 1))
    return value - q * se, value + q * se


def bernstein_interval(
    value: float, variance: float, n: int, term_range: float, alpha: float
) -> tuple[float, float]:
    """Two-sided empirical Bernstein interval for a mean of n terms spanning ``term_range``;
    ``variance`` is their sample variance (ddof 1)."""
    if n < 2:
        return -math.inf, math.inf
    log_term = math.log(4.0 / alpha)
    half = math.sqrt(2.0 * variance * log_term / n) + 7.0 * term_range * log_term / (3.0 * (n - 1))
    return value - half, value + half


def bootstrap_interval(
    sums: BootstrapSums, value_of: Callable[[np.ndarray], float], alpha: float
) -> tuple[float, float]:
    """Percentile interval of f over the replicates' means (empty replicates are dropped)."""
    means = sums.replicate_means()
    values = np.array([value_of(m) for m in means if np.all(np.isfinite(m))])
    if values.size < 2:
        return -math.inf, math.inf
    lo, hi = np.quantile(values, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(lo), float(hi)
