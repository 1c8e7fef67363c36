"""The primary estimate and its verdict: one number an analyst can act on, chosen from the data,
with an interval that does not lie and a plain answer to "can I trust it?".

**Choice (SLOPE).** Switch-DR with threshold τ (``ope.model_based.SwitchDR``) runs from the
weight cap (τ = N / ``min_expected_rows``: DR wherever the window holds enough comparable rows,
unbiased there, the widest interval) down to DM (τ = 0: the outcome model alone, the narrowest,
biased by the model's error). A weight above the cap belongs to a (position, item) the window
expects fewer than ``min_expected_rows`` rows of, where an importance-weighted correction is
noise that no normal interval describes; that mass counts as unsupported (below). Along the
ladder the bias grows and the variance shrinks: the setting of SLOPE (Su, Srinath &
Krishnamurthy, "Adaptive Estimator Selection for Off-Policy Evaluation", ICML 2020, after
Lepski's method). The primary estimate is the last rung whose (1 − α) interval still meets
every earlier rung's (Su et al. widen each to twice its half-width; see ``SLOPE_WIDENING``). Where a
narrower rung contradicts the less biased ones the walk stops before it, so an outcome model that
is off shows up as a choice nearer the cap rather than as a confident wrong number.

**Intervals that do not lie.** SLOPE buys a better point estimate, not a narrower interval: a
rung's own interval covers that rung's expectation, which misses the value by the outcome
model's error, and the data bound that error only through the less biased rungs. So the primary
interval joins the chosen rung's interval with the first rung's (unbiased on the support); a
DM-like choice with a narrow interval of its own never reaches the analyst as a narrow interval.
Importance weights see only what the logging policy could show. The target's mass outside that
support or above the weight cap (``ope.support.thin``; per decision the expected number of its
slate positions the log can say nothing about, u_i) is worth between 0 and u_i × the largest
reward of a position, whatever any estimator says. So the interval is widened by that
partial-identification bound: down by the outcome model's value on that part (``model_only``:
it could be worth 0) and up by the rest of the bound. With full support this adds nothing; with
thin support the interval is wide, and it says so.

**Verdict.** Reliable when every check passes: the target's unsupported share at most
``max_unsupported``; the effective sample size of the weights at least ``min_ess`` (few rows
carrying the estimate make its interval a guess); and the interval's half-width at most
``max_relative_half_width`` of the value. Each failed check is a reason, in words. (SLOPE may
well choose DM: that means the outcome model agreed with every less biased estimate.)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from ope.batch import OpeBatch
from ope.estimators import Estimate
from ope.intervals import check_alpha
from ope.model_based import SwitchDR
from ope.paired import paired_lift
from ope.support import UNSUPPORTED_SHARE_LIMIT

SWITCH_LADDER: tuple[float, ...] = (math.inf, 100.0, 30.0, 10.0, 3.0, 1.0, 0.3, 0.0)
"""Switch-DR thresholds from DR (∞) to DM (0): SLOPE's rungs, in order of growing bias."""

SLOPE_WIDENING = 1.0
"""How far each rung's (1 − α) interval is widened before intersecting. Su et al. widen to twice
the half-width; here that walked a strong candidate's lift (uniform logs, fitted model against
production) from DR's 0.759 [0.403, 1.116] down to 0.013 at τ = 1, step by step, each step
within twice the noise, so the walk uses the intervals themselves."""


def rung_name(tau: float) -> str:
    """The name a ladder rung is reported under: dr, dm, or switch-dr(τ=...)."""
    if tau == math.inf:
        return "dr"
    if tau == 0.0:
        return "dm"
    return f"switch-dr(tau={tau:g})"


@dataclass(frozen=True)
class VerdictLimits:
    """What a reliable primary estimate needs; see the module docstring."""

    max_unsupported: float = UNSUPPORTED_SHARE_LIMIT
    min_ess: float = 100.0
    max_relative_half_width: float = 0.25
    min_expected_rows: float = 5.0
    """A (position, item) of the target counts as supported only where a window of N decisions
    expects at least this many logged rows like it: weights above N / min_expected_rows are
    switched to the outcome model and their mass bounded (0: only a zero propensity is outside
    the support)."""
    reward_max: float = 1.0
    """The largest reward one slate position can earn (1 for plays): the partial-identification
    bound of the unsupported mass."""

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{name} must be a number; got {value!r}")
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0; got {value!r}")


@dataclass(frozen=True)
class Support:
    """What the replay knows of the target's support, per decision on average: ``share``, the
    share of the target's slate outside the logging policy's support; ``mass`` the expected
    number of such positions; ``model_only`` the outcome model's value on them. None: unknown."""

    share: float | None = None
    mass: float | None = None
    model_only: float | None = None


@dataclass(frozen=True)
class Rung:
    """One step of the SLOPE walk: an estimator's value and its (1 − α) interval."""

    name: str
    value: float
    lo: float
    hi: float
    tau: float = math.nan


@dataclass(frozen=True)
class Primary:
    """The primary estimate: the chosen estimator's value, the honest interval, and whether it
    can be trusted (``reasons`` says why not, or that every check passed)."""

    estimator: str
    value: float
    lo: float
    hi: float
    reliable: bool
    reasons: list[str]
    estimator_lo: float
    estimator_hi: float
    path: list[Rung] = field(default_factory=list)
    diagnostics: dict[str, float] = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        return "reliable" if self.reliable else "not reliable"

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["verdict"] = self.verdict
        return out


def slope_index(rungs: list[Rung], widening: float = SLOPE_WIDENING) -> int:
    """The last rung whose widened interval meets every earlier rung's (rungs in order of
    growing bias); rungs with an infinite or NaN interval are never chosen past the first."""
    lo, hi = -math.inf, math.inf
    chosen = 0
    for i, rung in enumerate(rungs):
        half = 0.5 * (rung.hi - rung.lo)
        if not math.isfinite(half):
            if i == 0:
                continue
            break
        lo = max(lo, rung.value - widening * half)
        hi = min(hi, rung.value + widening * half)
        if lo > hi:
            break
        chosen = i
    return chosen


def honest_interval(rungs: list[Rung], chosen: Rung) -> tuple[float, float]:
    """The chosen rung's interval joined with the least biased rung's (DR's): the chosen rung's
    own interval covers its expectation, not the value, and only DR's is free of the outcome
    model's error (on the logging policy's support)."""
    first = rungs[0]
    return min(chosen.lo, first.lo), max(chosen.hi, first.hi)


def weight_cap(n_decisions: int, limits: VerdictLimits) -> float:
    """The largest weight whose row still corrects the outcome model: N / min_expected_rows."""
    if limits.min_expected_rows <= 0:
        return math.inf
    return n_decisions / limits.min_expected_rows


def ladder_taus(cap: float) -> list[float]:
    """The thresholds of SLOPE's walk: the weight cap, then every smaller one of
    ``SWITCH_LADDER`` down to DM."""
    return [cap, *(tau for tau in SWITCH_LADDER if tau < cap)]


def ladder(batch: OpeBatch, *, alpha: float = 0.05, cap: float = math.inf) -> list[Rung]:
    """Switch-DR at every threshold of ``ladder_taus(cap)`` (needs q_hat and v_hat)."""
    out = []
    for tau in ladder_taus(cap):
        e = SwitchDR(tau=tau).estimate(batch, alpha=alpha)
        out.append(Rung(name=rung_name(tau), value=e.value, lo=e.lo, hi=e.hi, tau=tau))
    return out


def unsupported_bounds(
    support: Support, *, model_based: bool, reward_max: float
) -> tuple[float, float]:
    """(down, up): how far the unsupported mass can move the value from the estimate. A model-
    based estimate counted ``model_only`` for it (the truth may be 0); an importance-weighted
    one counted nothing (the truth may be the whole bound)."""
    if support.mass is None or support.mass <= 0:
        return 0.0, 0.0
    bound = support.mass * reward_max
    counted = (support.model_only or 0.0) if model_based else 0.0
    return counted, max(bound - counted, 0.0)


def _support_check(who: str, support: Support, limits: VerdictLimits) -> tuple[bool, str]:
    if support.share is None:
        return True, f"{who}: the logging policy's support is unknown, so not checked"
    return (
        support.share <= limits.max_unsupported,
        f"{who}: {100 * support.share:.1f}% of its slate lies where the logging policy never "
        f"shows (at most {100 * limits.max_unsupported:.1f}%)",
    )


def _ess_check(who: str, batch: OpeBatch, limits: VerdictLimits) -> tuple[bool, str]:
    ess = batch.weight_stats.diagnostics()["ess"]
    return (
        ess >= limits.min_ess,
        f"{who}: effective sample size {ess:.1f} of {batch.n_rows} rows "
        f"(at least {limits.min_ess:g})",
    )


def _width_check(value: float, lo: float, hi: float, limits: VerdictLimits) -> tuple[bool, str]:
    half = 0.5 * (hi - lo)
    relative = half / abs(value) if value != 0 else math.inf
    return (
        relative <= limits.max_relative_half_width,
        f"interval half-width {half:.4g} is {100 * relative:.0f}% of the value "
        f"(at most {100 * limits.max_relative_half_width:.0f}%)",
    )


def _choice(rungs: list[Rung], down: float, up: float) -> tuple[Rung, float, float]:
    """SLOPE's rung and the primary interval: the honest one, widened by the unsupported
    bound (``down`` below, ``up`` above)."""
    chosen = rungs[slope_index(rungs)]
    lo, hi = honest_interval(rungs, chosen)
    return chosen, lo - down, hi + up


def _primary(
    rungs: list[Rung],
    choice: tuple[Rung, float, float],
    checks: list[tuple[bool, str]],
    diagnostics: dict[str, float],
) -> Primary:
    chosen, lo, hi = choice
    return Primary(
        estimator=chosen.name,
        value=chosen.value,
        lo=lo,
        hi=hi,
        reliable=all(passed for passed, _ in checks),
        reasons=[text for passed, text in checks if not passed] or ["every check passed"],
        estimator_lo=chosen.lo,
        estimator_hi=chosen.hi,
        path=rungs,
        diagnostics=diagnostics,
    )


def primary_estimate(
    batch: OpeBatch,
    *,
    support: Support | None = None,
    alpha: float = 0.05,
    limits: VerdictLimits | None = None,
) -> Primary:
    """The primary estimate of ``batch`` (which must carry q_hat and v_hat) with its verdict."""
    alpha = check_alpha(alpha)
    limits = limits or VerdictLimits()
    support = support or Support()
    rungs = ladder(batch, alpha=alpha, cap=weight_cap(batch.n_decisions, limits))
    down, up = unsupported_bounds(support, model_based=True, reward_max=limits.reward_max)
    choice = _choice(rungs, down, up)
    checks = [
        _support_check("target", support, limits),
        _ess_check("target", batch, limits),
        _width_check(choice[0].value, choice[1], choice[2], limits),
    ]
    diagnostics = {
        "ess": batch.weight_stats.diagnostics()["ess"],
        "unsupported_down": down,
        "unsupported_up": up,
    }
    return _primary(rungs, choice, checks, diagnostics)


def lift_ladder(
    candidate: OpeBatch, baseline: OpeBatch, *, alpha: float = 0.05, cap: float = math.inf
) -> list[Rung]:
    """The paired lift (``ope.paired``) by Switch-DR at every threshold of
    ``ladder_taus(cap)``."""
    out = []
    for tau in ladder_taus(cap):
        lift = paired_lift(SwitchDR(tau=tau), candidate, baseline, alpha=alpha)
        out.append(Rung(name=rung_name(tau), value=lift.value, lo=lift.lo, hi=lift.hi, tau=tau))
    return out


def primary_lift(
    candidate: OpeBatch,
    baseline: OpeBatch,
    *,
    candidate_support: Support | None = None,
    baseline_support: Support | None = None,
    alpha: float = 0.05,
    limits: VerdictLimits | None = None,
) -> Primary:
    """The primary lift of ``candidate`` over ``baseline`` on the same logged rows: SLOPE on the
    paired lifts, widened by both policies' unsupported bounds, reliable when both policies pass
    the support and sample-size checks."""
    alpha = check_alpha(alpha)
    limits = limits or VerdictLimits()
    candidate_support = candidate_support or Support()
    baseline_support = baseline_support or Support()
    cap = weight_cap(candidate.n_decisions, limits)
    rungs = lift_ladder(candidate, baseline, alpha=alpha, cap=cap)
    c_down, c_up = unsupported_bounds(
        candidate_support, model_based=True, reward_max=limits.reward_max
    )
    b_down, b_up = unsupported_bounds(
        baseline_support, model_based=True, reward_max=limits.reward_max
    )
    checks = [
        _support_check("candidate", candidate_support, limits),
        _ess_check("candidate", candidate, limits),
        _support_check("baseline", baseline_support, limits),
        _ess_check("baseline", baseline, limits),
    ]
    diagnostics = {
        "candidate_ess": candidate.weight_stats.diagnostics()["ess"],
        "baseline_ess": baseline.weight_stats.diagnostics()["ess"],
        "unsupported_down": c_down + b_up,
        "unsupported_up": c_up + b_down,
    }
    return _primary(rungs, _choice(rungs, c_down + b_up, c_up + b_down), checks, diagnostics)


def as_estimate(primary: Primary, n_decisions: int) -> Estimate:
    """The primary estimate in the shape of every other estimate (named "primary")."""
    return Estimate(
        name="primary",
        value=primary.value,
        lo=primary.lo,
        hi=primary.hi,
        n_decisions=n_decisions,
        diagnostics=dict(primary.diagnostics),
        interval=f"normal ({primary.estimator}) + unsupported bound",
    )
