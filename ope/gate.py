"""The gate before an A/B test: the paired lift of a candidate policy over a baseline on the
same logged decisions, the diagnostics a trustworthy estimate needs, and the decision with its
reasons.

**Paired lift** (``ope.paired``): both policies on the same logged rows, with the
covariance of their estimates. By default the decision rests on the **primary lift**
(``ope.verdict.primary_lift``): SLOPE's choice on the Switch-DR ladder, its interval joined with
DR's and widened by both policies' unsupported bounds, the same number the report leads with.
Rows without a reward model fall back to SNIPS's paired lift; ``estimator`` names any other.

**Decision.** "ready" when the lower bound of the lift's (1 − α) interval is above the margin
AND every diagnostic passes, for both policies:

- effective sample size (Σw)²/Σw² of the row weights at least ``min_ess``;
- mean weight where it should be beyond its sampling noise: the expected item-position weight
  is 1 minus the target's unsupported share (1 with full support), so
  max(|w̄ − (1 − share)| − 2 se(w̄), 0) ≤ tolerance; a gap means wrong propensities;
- the largest single weight at most ``max_weight_share`` of the weights' sum (one row must not
  decide the estimate);
- when the caller knows it (a replay on logged candidates does), the target's share of its slate
  on (item, position) pairs the logging policy could not show, at most ``max_unsupported``.

The ESS and support checks are the primary estimate's verdict (``ope.verdict``) at the gate's
thresholds, so a READY lift is always a reliable one. The share of rows with zero target
propensity is reported, not gated: a target that concentrates on a few items legitimately gives
most logged rows weight 0.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ope.batch import OpeBatch
from ope.model_based import SwitchDR
from ope.paired import Lift, paired_lift, paired_lifts
from ope.verdict import Primary, Support, VerdictLimits, primary_lift

READY = "ready"
NOT_READY = "not_ready"
PRIMARY = "primary"
FALLBACK_ESTIMATOR = "snipw"
"""The lift the decision rests on when the rows carry no reward model."""


@dataclass(frozen=True)
class GateThresholds:
    """What the gate demands; see the module docstring."""

    margin: float = 0.0
    min_ess: float = VerdictLimits.min_ess
    weight_tolerance: float = 0.1
    max_weight_share: float = 0.05
    max_unsupported: float = VerdictLimits.max_unsupported
    min_expected_rows: float = VerdictLimits.min_expected_rows

    def verdict_limits(self) -> VerdictLimits:
        """The primary lift's verdict at these thresholds."""
        return VerdictLimits(
            min_ess=self.min_ess,
            max_unsupported=self.max_unsupported,
            min_expected_rows=self.min_expected_rows,
        )

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number; got {value!r}")
        nonnegative = (
            "min_ess", "weight_tolerance", "max_weight_share", "max_unsupported",
            "min_expected_rows",
        )  # fmt: skip
        for name in nonnegative:
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0; got {getattr(self, name)}")


@dataclass(frozen=True)
class Check:
    """One condition of the gate: ``value`` compared with ``threshold`` by ``rule``."""

    name: str
    value: float
    rule: str
    threshold: float
    passed: bool

    def reason(self) -> str:
        verdict = "pass" if self.passed else "FAIL"
        return f"{self.name} {self.value:.4g} (must be {self.rule} {self.threshold:.4g}): {verdict}"


def mean_weight_se(batch: OpeBatch) -> float:
    """Standard error of the mean row weight Σw / n_rows, with the rows of a decision
    correlated: the ratio estimator's se over decisions, √(Σ_i (S_i − m K_i)²) / Σ_i K_i, with
    S_i the decision's summed weights and K_i its rows."""
    sums = np.bincount(batch.decision, weights=batch.weight, minlength=batch.n_decisions)
    rows = np.bincount(batch.decision, minlength=batch.n_decisions).astype(np.float64)
    mean = sums.sum() / rows.sum()
    return float(np.sqrt(np.sum((sums - mean * rows) ** 2)) / rows.sum())


def _weight_checks(
    who: str, batch: OpeBatch, limits: GateThresholds, unsupported: float | None
) -> list[Check]:
    d = batch.weight_stats.diagnostics()
    stats = batch.weight_stats
    share = stats.max_weight / stats.weight_sum if stats.weight_sum > 0 else math.inf
    # A mean weight away from its expectation by more than sampling noise (2 se) and the
    # tolerance; the expectation is 1 minus the unsupported share.
    expected = 1.0 - (unsupported or 0.0)
    gap = max(abs(d["mean_weight"] - expected) - 2.0 * mean_weight_se(batch), 0.0)
    name = "|mean weight - 1|" if unsupported is None else "|mean weight - (1 - unsupported)|"
    return [
        Check(f"{who} ess", d["ess"], ">=", limits.min_ess, d["ess"] >= limits.min_ess),
        Check(
            f"{who} {name} beyond 2 se", gap, "<=", limits.weight_tolerance,
            gap <= limits.weight_tolerance,
        ),
        Check(
            f"{who} max weight share", share, "<=", limits.max_weight_share,
            share <= limits.max_weight_share,
        ),
    ]  # fmt: skip


@dataclass(frozen=True)
class GateDecision:
    """The gate's answer: the lift it rests on, every lift, every check, and the diagnostics."""

    lift: Lift
    lifts: dict[str, Lift]
    checks: list[Check]
    diagnostics: dict[str, dict[str, float]] = field(default_factory=dict)
    alpha: float = 0.05
    primary: Primary | None = None
    """The primary lift with its verdict, when the decision rests on it."""

    @property
    def ready(self) -> bool:
        return all(check.passed for check in self.checks)

    @property
    def decision(self) -> str:
        return READY if self.ready else NOT_READY

    @property
    def reasons(self) -> list[str]:
        return [check.reason() for check in self.checks]

    def payload(self) -> dict[str, Any]:
        """The JSON document stored in the ``ope_report`` row (finite numbers only)."""
        return _finite(
            {
                "kind": "gate",
                "decision": self.decision,
                "alpha": self.alpha,
                "lift": self.lift.as_dict(),
                "lifts": {name: lift.as_dict() for name, lift in self.lifts.items()},
                "primary": None if self.primary is None else self.primary.as_dict(),
                "checks": [asdict(check) for check in self.checks],
                "diagnostics": self.diagnostics,
            }
        )


def _finite(value: Any) -> Any:
    """``value`` with non-finite floats replaced by None (JSON and PostgreSQL have none)."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def _primary_lift(
    candidate: OpeBatch,
    baseline: OpeBatch,
    supports: dict[str, Support],
    limits: GateThresholds,
    alpha: float,
) -> tuple[Lift, Primary]:
    primary = primary_lift(
        candidate,
        baseline,
        candidate_support=supports.get("candidate"),
        baseline_support=supports.get("baseline"),
        alpha=alpha,
        limits=limits.verdict_limits(),
    )
    chosen = next(r for r in primary.path if r.name == primary.estimator)
    rung = paired_lift(SwitchDR(tau=chosen.tau), candidate, baseline, alpha=alpha)
    lift = Lift(
        estimator=PRIMARY,
        value=primary.value,
        lo=primary.lo,
        hi=primary.hi,
        candidate=rung.candidate,
        baseline=rung.baseline,
        n_decisions=rung.n_decisions,
    )
    return lift, primary


def gate(
    candidate: OpeBatch,
    baseline: OpeBatch,
    *,
    thresholds: GateThresholds | None = None,
    estimator: str | None = None,
    alpha: float = 0.05,
    supports: dict[str, Support] | None = None,
) -> GateDecision:
    """Decide whether ``candidate`` is ready for an A/B test against ``baseline``.

    Args:
        candidate, baseline: the two policies replayed on the same logged rows.
        estimator: the lift the decision rests on: None or "primary" for the primary lift
            (which needs q_hat and v_hat; without them SNIPS), or any paired lift by name.
        supports: per policy ("candidate", "baseline"), what the replay knows of its support
            (``ope.verdict.Support``); the unsupported share is gated and bounds the primary
            lift's interval where given.
    """
    limits = thresholds or GateThresholds()
    supports = supports or {}
    lifts = paired_lifts(candidate, baseline, alpha=alpha)
    primary = None
    has_model = all(b.q_hat is not None and b.v_hat is not None for b in (candidate, baseline))
    if estimator in (None, PRIMARY) and has_model:
        lift, primary = _primary_lift(candidate, baseline, supports, limits, alpha)
    else:
        name = FALLBACK_ESTIMATOR if estimator in (None, PRIMARY) else estimator
        if name not in lifts:
            raise ValueError(
                f"estimator must be primary or one of {', '.join(lifts)} for these inputs; "
                f"got {estimator!r}"
            )
        lift = lifts[name]
    checks = [
        Check(
            f"{lift.estimator} lift lower bound", lift.lo, ">", limits.margin,
            lift.lo > limits.margin,
        )
    ]  # fmt: skip
    diagnostics: dict[str, dict[str, float]] = {}
    for who, batch in (("candidate", candidate), ("baseline", baseline)):
        share = supports[who].share if who in supports else None
        checks += _weight_checks(who, batch, limits, share)
        diagnostics[who] = batch.weight_stats.diagnostics()
        diagnostics[who]["mean_weight_se"] = mean_weight_se(batch)
        if share is not None:
            diagnostics[who]["unsupported_share"] = share
            checks.append(
                Check(
                    f"{who} unsupported share", share, "<=", limits.max_unsupported,
                    share <= limits.max_unsupported,
                )
            )  # fmt: skip
    return GateDecision(
        lift=lift,
        lifts=lifts,
        checks=checks,
        diagnostics=diagnostics,
        alpha=alpha,
        primary=primary,
    )
