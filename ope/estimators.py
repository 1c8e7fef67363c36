"""Off-policy estimators over per-row arrays: IPS and SNIPS, with normal intervals.

Each estimator is a small class. The base class validates (through ``OpeBatch``), sums the
per-row terms of each decision, and gives the interval and the diagnostics; an estimator only
says how one row contributes (STYLE.md: one per-round function per estimator).

For slates logged one row per (decision, position), the value of a decision is the sum over its
positions; with per-position marginal propensities this is the item-position IPS of Li et al.
(2018), unbiased when the reward at a position depends only on the item there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np

from ope.batch import OpeBatch


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


class Estimator:
    """Base class: subclasses give ``_round_terms`` (one influence term per row) and may
    override ``_value``."""

    name = "base"

    def _round_terms(self, batch: OpeBatch) -> np.ndarray:
        raise NotImplementedError

    def _influence(self, batch: OpeBatch) -> np.ndarray:
        """Per-decision terms whose mean is the estimate and whose variance gives the interval."""
        return per_decision(batch, self._round_terms(batch))

    def estimate(self, batch: OpeBatch, *, alpha: float = 0.05) -> Estimate:
        """The estimate with a normal (1 − alpha) interval over decisions."""
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1); got {alpha}")
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
            diagnostics=diagnostics(batch),
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

    def _slot_values(self, batch: OpeBatch) -> tuple[np.ndarray, np.ndarray]:
        w, n = batch.weight, batch.n_decisions
        n_slots = int(batch.slot.max()) + 1
        weight_sum = np.bincount(batch.slot, weights=w, minlength=n_slots)
        reward_sum = np.bincount(batch.slot, weights=w * batch.reward, minlength=n_slots)
        value = np.divide(reward_sum, weight_sum, out=np.zeros(n_slots), where=weight_sum > 0)
        mean_weight = weight_sum / n
        return value, mean_weight

    def _round_terms(self, batch: OpeBatch) -> np.ndarray:
        value, mean_weight = self._slot_values(batch)
        s = batch.slot
        scale = np.divide(1.0, mean_weight[s], out=np.zeros(s.size), where=mean_weight[s] > 0)
        return batch.weight * (batch.reward - value[s]) * scale

    def _value(self, batch: OpeBatch, influence: np.ndarray) -> float:
        return float(self._slot_values(batch)[0].sum())


ESTIMATORS: dict[str, type[Estimator]] = {"ipw": IPS, "snipw": SNIPS}


def estimate_all(batch: OpeBatch, *, alpha: float = 0.05) -> dict[str, Estimate]:
    """Every estimator the batch's columns allow."""
    return {name: cls().estimate(batch, alpha=alpha) for name, cls in ESTIMATORS.items()}
