"""Always-valid inference for an A/B difference: a confidence sequence that may be looked at
after every day of the test without inflating its error rate.

The mixture sequential probability ratio test (mSPRT) of Johari, Koomen, Pekelis & Walsh,
"Peeking at A/B Tests: Why it matters, and what to do about it" (KDD 2017), and Johari, Pekelis &
Walsh, "Always Valid Inference: Continuous Monitoring of A/B Tests" (Operations Research 2022):
for an estimate Δ̂ ~ N(Δ, V) with a N(θ₀, τ²) mixture over the alternative, the statistic

    Λ = sqrt(V / (V + τ²)) · exp(τ² (Δ̂ − θ₀)² / (2 V (V + τ²)))

is a martingale under Δ = θ₀, so by Ville's inequality P(Λ ever ≥ 1/α) ≤ α. Inverting it gives
the always-valid interval Δ̂ ± r(V) with

    r(V)² = 2 V (V + τ²) / τ² · (log(1/α) + ½ log((V + τ²) / V)),

the two-sided normal-mixture boundary of Howard, Ramdas, McAuliffe & Sekhon, "Time-uniform,
nonparametric, nonasymptotic confidence sequences" (Annals of Statistics 2021). V is the
clustered variance of Δ̂ from ``ope.ab`` (a plug-in, so validity is asymptotic, as in Johari et
al.). The intersection of the intervals over the looks so far is also always valid.

τ² must be fixed before the test. ``tau2_for_horizon`` chooses it so that r is smallest when V
reaches the variance expected at the planned end (``ope.ab_plan``), the choice of Howard et al.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any


def _check(alpha: float, tau2: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1); got {alpha}")
    if not (math.isfinite(tau2) and tau2 > 0.0):
        raise ValueError(f"tau2 (the mixture variance) must be a positive number; got {tau2}")


def mixture_radius(variance: float, *, tau2: float, alpha: float) -> float:
    """r(V): the confidence sequence's half-width when Δ̂ has variance ``variance``."""
    _check(alpha, tau2)
    if not variance >= 0.0:
        raise ValueError(f"variance must be >= 0; got {variance}")
    if variance == 0.0:
        return 0.0
    if not math.isfinite(variance):
        return math.inf
    log_term = math.log(1.0 / alpha) + 0.5 * math.log((variance + tau2) / variance)
    return math.sqrt(2.0 * variance * (variance + tau2) / tau2 * log_term)


def msprt_statistic(estimate: float, variance: float, *, tau2: float, null: float = 0.0) -> float:
    """Λ for H₀: Δ = ``null`` (reject when Λ ≥ 1/α); ∞ when the exponent overflows."""
    _check(0.5, tau2)
    if not variance > 0.0:
        raise ValueError(f"variance must be > 0; got {variance}")
    exponent = tau2 * (estimate - null) ** 2 / (2.0 * variance * (variance + tau2))
    if exponent > 700.0:
        return math.inf
    return math.sqrt(variance / (variance + tau2)) * math.exp(exponent)


def tau2_for_horizon(variance_at_horizon: float, *, alpha: float) -> float:
    """The τ² that makes r smallest at V = ``variance_at_horizon``: τ² = ρ* · V, with ρ*
    minimizing r²/V = 2 (1 + 1/ρ) · (log(1/α) + ½ log(1 + ρ))."""
    from scipy.optimize import minimize_scalar

    if not (math.isfinite(variance_at_horizon) and variance_at_horizon > 0.0):
        raise ValueError(
            f"the variance expected at the horizon must be a positive number; got "
            f"{variance_at_horizon}"
        )
    _check(alpha, 1.0)
    level = math.log(1.0 / alpha)

    def width(log_rho: float) -> float:
        rho = math.exp(log_rho)
        return (1.0 + 1.0 / rho) * (level + 0.5 * math.log1p(rho))

    best = minimize_scalar(width, bounds=(-10.0, 10.0), method="bounded")
    return math.exp(float(best.x)) * variance_at_horizon


@dataclass(frozen=True)
class SequentialInterval:
    """The always-valid interval at this look, and its intersection with the earlier looks'."""

    value: float
    lo: float
    hi: float
    running_lo: float
    running_hi: float
    variance: float
    tau2: float
    alpha: float
    statistic: float
    looks: int

    @property
    def rejects_null(self) -> bool:
        """Whether the running interval excludes 0 (equivalently, for this look, Λ ≥ 1/α)."""
        return self.running_lo > 0.0 or self.running_hi < 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"rejects_null": self.rejects_null}


def confidence_sequence(
    estimate: float,
    variance: float,
    *,
    tau2: float,
    alpha: float = 0.05,
    earlier: Iterable[tuple[float, float]] = (),
) -> SequentialInterval:
    """The always-valid interval for Δ at this look (``estimate`` with ``variance``), and its
    intersection with the ``earlier`` looks' (lo, hi) intervals made with the same τ² and α."""
    radius = mixture_radius(variance, tau2=tau2, alpha=alpha)
    lo, hi = estimate - radius, estimate + radius
    running_lo, running_hi, looks = lo, hi, 1
    for before_lo, before_hi in earlier:
        running_lo, running_hi = max(running_lo, before_lo), min(running_hi, before_hi)
        looks += 1
    if 0.0 < variance < math.inf:
        statistic = msprt_statistic(estimate, variance, tau2=tau2)
    else:  # no information yet (∞), or none left to doubt (0)
        statistic = 0.0 if variance == math.inf else math.inf
    return SequentialInterval(
        value=estimate, lo=lo, hi=hi, running_lo=running_lo, running_hi=running_hi,
        variance=variance, tau2=tau2, alpha=alpha, statistic=statistic, looks=looks,
    )  # fmt: skip
