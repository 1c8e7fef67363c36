"""The paired lift of a candidate policy over a baseline on the same logged decisions.

Both policies are replayed on the same logged rows, so each estimator's per-decision vectors
z_i^C (candidate) and z_i^B (baseline) are computed on the same decisions. The lift is
Δ = f(z̄^C) − f(z̄^B) and its standard error comes from the delta method on the stacked vector
[z_i^C, z_i^B] with gradient [∇f(z̄^C), −∇f(z̄^B)]:

    se²(Δ) = gᵀ Σ̂ g / n,   Σ̂ the sample covariance of [z^C, z^B] over decisions.

For IPS this is the standard error of the mean of the per-decision differences
Σ_k (w_ik^C − w_ik^B) r_ik; for SNIPS and the doubly robust estimators the covariance between
the two estimates is used the same way. Positively correlated estimates (the usual case: the two
policies share most of their slates) give a much narrower interval than two independent ones.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ope.batch import OpeBatch, OpeInputError
from ope.estimators import Estimator
from ope.intervals import check_alpha, delta_se, normal_interval
from ope.moments import Moments
from ope.suite import estimators


def check_same_rows(candidate: OpeBatch, baseline: OpeBatch) -> None:
    """Both batches must hold the same logged rows: same reward, pscore, decision and slot (and
    q_hat, when both have one). Raises OpeInputError naming the column and the first row that
    differs."""
    if candidate.n_rows != baseline.n_rows:
        raise OpeInputError(
            f"candidate and baseline must have the same rows; got {candidate.n_rows} and "
            f"{baseline.n_rows}"
        )
    columns = ["reward", "pscore", "decision", "slot"]
    if candidate.q_hat is not None and baseline.q_hat is not None:
        columns.append("q_hat")
    for column in columns:
        a, b = getattr(candidate, column), getattr(baseline, column)
        differs = a != b
        if np.any(differs):
            row = int(np.flatnonzero(differs)[0])
            name = "decision_id" if column == "decision" else column
            raise OpeInputError(
                f"{name} must be the same for candidate and baseline; got {a[row]} and {b[row]} "
                f"at row {row}"
            )


@dataclass(frozen=True)
class Lift:
    """V̂(candidate) − V̂(baseline) with its paired (1 − α) normal interval."""

    estimator: str
    value: float
    lo: float
    hi: float
    candidate: float
    baseline: float
    n_decisions: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _padded(gradient: np.ndarray, d: int) -> np.ndarray:
    return np.pad(gradient, (0, d - gradient.size))


def paired_lift(
    estimator: Estimator, candidate: OpeBatch, baseline: OpeBatch, *, alpha: float = 0.05
) -> Lift:
    """The lift by ``estimator`` on the same rows, with the paired delta-method interval."""
    alpha = check_alpha(alpha)
    check_same_rows(candidate, baseline)
    z_c = estimator._moments(candidate)  # (n, d_c)
    z_b = estimator._moments(baseline)  # (n, d_b)
    d_c = z_c.shape[1]
    moments = Moments.of(np.asfortranarray(np.hstack([z_c, z_b])))
    mean_c, mean_b = moments.mean[:d_c], moments.mean[d_c:]
    value_c, value_b = estimator._value_of(mean_c), estimator._value_of(mean_b)
    gradient = np.concatenate(
        [
            _padded(estimator._gradient(mean_c), d_c),
            -_padded(estimator._gradient(mean_b), z_b.shape[1]),
        ]
    )
    lift = value_c - value_b
    lo, hi = normal_interval(lift, delta_se(moments, gradient), alpha)
    return Lift(
        estimator=estimator.name,
        value=lift,
        lo=lo,
        hi=hi,
        candidate=value_c,
        baseline=value_b,
        n_decisions=moments.n,
    )


def paired_lifts(
    candidate: OpeBatch, baseline: OpeBatch, *, alpha: float = 0.05
) -> dict[str, Lift]:
    """The paired lift by every standard estimator both batches' columns allow."""
    out: dict[str, Lift] = {}
    for estimator in estimators():
        if estimator.supports(candidate) and estimator.supports(baseline):
            if estimator.name.startswith(("sips", "iips", "rips")):
                continue  # the slate estimators need columns a replay does not give both
            if estimator.name == "aips" and candidate.behavior is None:
                continue  # its data-driven choice of behaviour is made in finish, not per z
            out[estimator.name] = paired_lift(estimator, candidate, baseline, alpha=alpha)
    return out
