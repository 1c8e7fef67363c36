"""Off-policy estimators over per-row arrays: the base class, IPS, SNIPS and clipped IPS.

Each estimator is a small class. The base class validates (through ``OpeBatch``), sums the
per-row terms of each decision, and gives the interval and the diagnostics; an estimator only
says how one row contributes (STYLE.md: one per-round function per estimator). The estimators
that use a reward model (DM, DR, SNDR, DRos, Switch-DR) are in ``ope.model_based``; every
estimator the columns allow is run by ``ope.suite.estimate_all``.

For slates logged one row per (decision, position), the value of a decision is the sum over its
positions; with per-position marginal propensities this is the item-position IPS of Li et al.
(2018), unbiased when the reward at a position depends only on the item there.

Intervals are normal ones over decisions: V̂ ± z_{1−α/2} · sd(ψ) / √N, where ψ (N,) holds the
per-decision sums of the per-row terms (for self-normalized estimators, their delta-method
influence). obp's ``estimate_interval`` bootstraps instead, so intervals are not comparable
with obp's digit for digit; the point estimates are (tests/test_ope_estimators.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np

from ope.batch import OpeBatch, OpeInputError


@dataclass(frozen=True)
class Estimate:
    """An estimate with its (1 − α) interval and diagnostics."""

    name: str
    value: float
    lo: float
    hi: float
    n_decisions: int
    diagnostics: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, float | str | int | dict[str, float]]:
        return {
            "name": self.name,
            "value": self.value,
            "lo": self.lo,
            "hi": self.hi,
            "n_decisions": self.n_decisions,
            **self.diagnostics,
        }


def diagnostics(batch: OpeBatch) -> dict[str, float]:
    """Effective sample size, largest weight, share of zero target propensity, mean weight."""
    w = batch.weight
    return {
        "ess": float(w.sum() ** 2 / np.sum(w**2)) if np.any(w > 0) else 0.0,
        "max_weight": float(w.max()),
        "zero_target_share": float(np.mean(batch.target_pscore == 0.0)),
        "mean_weight": float(w.mean()),
    }


def per_decision(batch: OpeBatch, terms: np.ndarray) -> np.ndarray:
    """Sum of per-row terms within each decision, (n_decisions,)."""
    return np.bincount(batch.decision, weights=terms, minlength=batch.n_decisions)


def check_hyperparameter(name: str, value: float) -> float:
    """A weight threshold or shrinkage: a number in [0, inf] (obp's checks), returned as float."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number; got {value!r}")
    value = float(value)
    if np.isnan(value) or value < 0.0:
        raise ValueError(f"{name} must be in [0, inf]; got {value}")
    return value


def self_normalized(batch: OpeBatch, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per slot k: the ratio Σ_i w_ik y_ik / Σ_i w_ik (0 where Σ_i w_ik = 0) and the mean weight
    Σ_i w_ik / N, both (n_slots,); y is (n,) per row."""
    w, n = batch.weight, batch.n_decisions
    n_slots = int(batch.slot.max()) + 1
    weight_sum = np.bincount(batch.slot, weights=w, minlength=n_slots)
    y_sum = np.bincount(batch.slot, weights=w * y, minlength=n_slots)
    ratio = np.divide(y_sum, weight_sum, out=np.zeros(n_slots), where=weight_sum > 0)
    return ratio, weight_sum / n


def self_normalized_influence(batch: OpeBatch, y: np.ndarray) -> np.ndarray:
    """(n,) delta-method influence of the per-slot ratio: w_ik (y_ik − ratio_k) / mean_i(w_ik)."""
    ratio, mean_weight = self_normalized(batch, y)
    s = batch.slot
    scale = np.divide(1.0, mean_weight[s], out=np.zeros(s.size), where=mean_weight[s] > 0)
    return batch.weight * (y - ratio[s]) * scale


class Estimator:
    """Base class: subclasses give ``_round_terms`` (one influence term per row) and may
    override ``_value`` and ``_extra_diagnostics``.

    ``requires`` names the optional ``OpeBatch`` columns (``q_hat``, ``v_hat``) the estimator
    reads; ``estimate`` raises ``OpeInputError`` naming them when the batch lacks them.
    """

    name = "base"
    requires: tuple[str, ...] = ()

    def _round_terms(self, batch: OpeBatch) -> np.ndarray:
        raise NotImplementedError

    def _extra_diagnostics(self, batch: OpeBatch) -> dict[str, float]:
        return {}

    def supports(self, batch: OpeBatch) -> bool:
        """Whether the batch has every column this estimator needs."""
        return all(getattr(batch, column) is not None for column in self.requires)

    def _check_columns(self, batch: OpeBatch) -> None:
        missing = [column for column in self.requires if getattr(batch, column) is None]
        if missing:
            raise OpeInputError(
                f"{self.name} needs column(s) {', '.join(missing)}, which the input lacks"
            )

    def _influence(self, batch: OpeBatch) -> np.ndarray:
        """Per-decision terms whose mean is the estimate and whose variance gives the interval."""
        return per_decision(batch, self._round_terms(batch))

    def estimate(self, batch: OpeBatch, *, alpha: float = 0.05) -> Estimate:
        """The estimate with a normal (1 − alpha) interval over decisions."""
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1); got {alpha}")
        self._check_columns(batch)
        values = self._influence(batch)
        value = self._value(batch, values)
        n = values.size
        se = float(values.std(ddof=1) / np.sqrt(n)) if n > 1 else float("inf")
        z = NormalDist().inv_cdf(1.0 - alpha / 2.0)
        return Estimate(
            name=self.name,
            value=value,
            lo=value - z * se,
            hi=value + z * se,
            n_decisions=n,
            diagnostics={**diagnostics(batch), **self._extra_diagnostics(batch)},
        )

    def _value(self, batch: OpeBatch, influence: np.ndarray) -> float:
        return float(influence.mean())


class IPS(Estimator):
    """Inverse propensity scoring: V̂ = (1/N) Σ_i Σ_k w_ik r_ik, w = π_e / π_0."""

    name = "ipw"

    def _round_terms(self, batch: OpeBatch) -> np.ndarray:
        return batch.weight * batch.reward


class SNIPS(Estimator):
    """Self-normalized IPS, per slot: V̂ = Σ_k (Σ_i w_ik r_ik / Σ_i w_ik).

    The interval is the delta-method one, with influence
    ψ_i = Σ_k w_ik (r_ik − V̂_k) / mean_i(w_ik).
    """

    name = "snipw"

    def _round_terms(self, batch: OpeBatch) -> np.ndarray:
        return self_normalized_influence(batch, batch.reward)

    def _value(self, batch: OpeBatch, influence: np.ndarray) -> float:
        return float(self_normalized(batch, batch.reward)[0].sum())


class ClippedIPS(Estimator):
    """IPS with the weight clipped at λ: V̂ = (1/N) Σ_i Σ_k min(w_ik, λ) r_ik.

    The semantics of obp's ``InverseProbabilityWeighting(lambda_=λ)`` (``iw = np.minimum(iw,
    lambda_)``), added after obp 0.4.1 (st-tech/zr-obp PR #115); 0.4.1 itself has no clipping.
    λ in [0, inf]; λ = inf is IPS.
    Clipping trades variance for a downward bias (for non-negative rewards) on the rows with
    w > λ, so the interval covers E[V̂], not the policy value. Diagnostic ``clipped_share``: the
    share of rows with w > λ.

    Args:
        lambda_: the largest weight kept.
    """

    name = "clipped-ipw"

    def __init__(self, lambda_: float) -> None:
        self.lambda_ = check_hyperparameter("lambda_", lambda_)

    def _round_terms(self, batch: OpeBatch) -> np.ndarray:
        return np.minimum(batch.weight, self.lambda_) * batch.reward

    def _extra_diagnostics(self, batch: OpeBatch) -> dict[str, float]:
        return {"clipped_share": float(np.mean(batch.weight > self.lambda_))}
