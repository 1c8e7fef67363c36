"""One off-policy evaluation of a candidate against production on one log window: the code path
that ``loopbreak ope report``, ``loopbreak ope gate`` and the loop study share, so that for the
same candidate, window and seed they give the same numbers.

``evaluate`` fits the window's outcome model once (``loop.ope_targets.fit_window_model``: logged
features only, cross-fitted), replays the candidate and the baseline on the window's logged
decisions (the baseline is by default the production policy as it was logged: every weight 1,
so its value is on-policy), runs every estimator, and makes the primary estimate of each and of
the lift with their verdicts (``ope.verdict``).

A candidate must not be evaluated on the decisions it was trained on: its score there is
optimistic (it has seen those rewards). ``training_overlap`` compares the window with a model
version's registered training window; the command line refuses an overlap unless forced.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from loop.ope_targets import (
    ReplayedTarget,
    TargetPolicy,
    fit_window_model,
    replay_logged,
    replay_targets,
)
from loop.windows import LoggedWindow
from ope.estimators import Estimate
from ope.gate import GateDecision, GateThresholds, gate
from ope.paired import Lift, paired_lifts
from ope.report import finite_or_none
from ope.suite import estimate_all
from ope.verdict import (
    Primary,
    Support,
    VerdictLimits,
    primary_estimate,
    primary_lift,
    weight_cap,
)


@dataclass(frozen=True)
class EvaluationSettings:
    """The outcome model, its folds' seed, the interval level and the verdict's limits."""

    reward_model: str = "logistic"
    n_folds: int = 3
    seed: int = 0
    alpha: float = 0.05
    limits: VerdictLimits = field(default_factory=VerdictLimits)


@dataclass(frozen=True)
class PolicyEvaluation:
    """One policy on the window: its replayed rows, every estimate, and its primary estimate."""

    name: str
    replayed: ReplayedTarget
    estimates: dict[str, Estimate]
    primary: Primary
    support: Support

    def record(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "primary": self.primary.as_dict(),
            "estimates": {name: e.as_dict() for name, e in self.estimates.items()},
            "support": {
                "unsupported_share": self.support.share,
                "unsupported_positions": self.support.mass,
                "model_only": self.support.model_only,
            },
        }


@dataclass(frozen=True)
class Evaluation:
    """A candidate against a baseline on one window, and when it was made."""

    window: dict[str, Any]
    candidate: PolicyEvaluation
    baseline: PolicyEvaluation
    lift: Primary
    lifts: dict[str, Lift]
    made_at: datetime
    settings: EvaluationSettings

    def record(self) -> dict[str, Any]:
        """The JSON document of the evaluation (finite numbers only)."""
        return finite_or_none(
            {
                "made_at": self.made_at.isoformat(),
                "window": self.window,
                "alpha": self.settings.alpha,
                "reward_model": self.settings.reward_model,
                "seed": self.settings.seed,
                "candidate": self.candidate.record(),
                "baseline": self.baseline.record(),
                "lift": self.lift.as_dict(),
                "lifts": {name: lift.as_dict() for name, lift in self.lifts.items()},
            }
        )


def window_summary(window: LoggedWindow, since: datetime | None, until: datetime | None) -> dict:
    """The window as asked (since, until) and as found (first and last decision, counts)."""
    times = pd.to_datetime(window.decisions["created_at"], utc=True)
    return {
        "since": since.isoformat() if since else None,
        "until": until.isoformat() if until else None,
        "first_decision": times.min().isoformat(),
        "last_decision": times.max().isoformat(),
        "decisions": len(window.decisions),
        "rows": len(window.slates),
        "models": sorted(window.decisions["model_version"].astype(str).unique().tolist()),
    }


def _support(replayed: ReplayedTarget) -> Support:
    return Support(
        share=replayed.unsupported_mass,
        mass=replayed.unsupported_positions,
        model_only=replayed.model_only,
    )


def _evaluated(replayed: ReplayedTarget, settings: EvaluationSettings) -> PolicyEvaluation:
    support = _support(replayed)
    estimates = estimate_all(replayed.batch, alpha=settings.alpha)
    primary = primary_estimate(
        replayed.batch, support=support, alpha=settings.alpha, limits=settings.limits
    )
    return PolicyEvaluation(
        name=replayed.name,
        replayed=replayed,
        estimates=estimates,
        primary=primary,
        support=support,
    )


def evaluate(
    window: LoggedWindow,
    candidate: TargetPolicy,
    baseline: TargetPolicy | None = None,
    *,
    settings: EvaluationSettings | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    history: LoggedWindow | None = None,
) -> Evaluation:
    """Evaluate ``candidate`` against ``baseline`` (default: production as logged) on the
    window's logged decisions; ``since``/``until`` only label the window as it was asked for.
    ``history``: earlier logged decisions the outcome model also learns from
    (``fit_window_model``)."""
    settings = settings or EvaluationSettings()
    model = fit_window_model(
        window,
        reward_model=settings.reward_model,
        n_folds=settings.n_folds,
        seed=settings.seed,
        history=history,
    )
    cap = weight_cap(len(window.decisions), settings.limits)
    (replayed_candidate,) = replay_targets(window, [candidate], model=model, max_weight=cap)
    if baseline is None:
        replayed_baseline = replay_logged(window, model=model)
    else:
        (replayed_baseline,) = replay_targets(window, [baseline], model=model, max_weight=cap)
    c, b = _evaluated(replayed_candidate, settings), _evaluated(replayed_baseline, settings)
    lift = primary_lift(
        c.replayed.batch,
        b.replayed.batch,
        candidate_support=c.support,
        baseline_support=b.support,
        alpha=settings.alpha,
        limits=settings.limits,
    )
    return Evaluation(
        window=window_summary(window, since, until),
        candidate=c,
        baseline=b,
        lift=lift,
        lifts=paired_lifts(c.replayed.batch, b.replayed.batch, alpha=settings.alpha),
        made_at=datetime.now(UTC),
        settings=settings,
    )


def gate_evaluation(
    evaluation: Evaluation,
    thresholds: GateThresholds | None = None,
    *,
    estimator: str | None = None,
) -> GateDecision:
    """The gate's decision on an evaluation: the same replayed rows and supports, so its primary
    lift is the evaluation's (``ope.gate.gate``)."""
    return gate(
        evaluation.candidate.replayed.batch,
        evaluation.baseline.replayed.batch,
        thresholds=thresholds,
        estimator=estimator,
        alpha=evaluation.settings.alpha,
        supports={
            "candidate": evaluation.candidate.support,
            "baseline": evaluation.baseline.support,
        },
    )


def _utc(text: str) -> pd.Timestamp:
    when = pd.Timestamp(text)
    return when.tz_localize(UTC) if when.tzinfo is None else when.tz_convert(UTC)


def training_overlap(
    window: LoggedWindow, training: dict[str, Any] | None
) -> tuple[int, str] | None:
    """How many of the window's decisions fall inside a model version's training window
    (``{"first": iso, "last": iso}``, as ``loop.retrain`` registers it), with a sentence; None
    when none does or the training window is not known."""
    if not training or not training.get("first") or not training.get("last"):
        return None
    first, last = _utc(training["first"]), _utc(training["last"])
    times = pd.to_datetime(window.decisions["created_at"], utc=True)
    inside = int(((times >= first) & (times <= last)).sum())
    if not inside:
        return None
    return inside, (
        f"{inside} of the window's {len(times)} decisions are in the candidate's training "
        f"window ({first.isoformat()} to {last.isoformat()}): it has seen their rewards"
    )
