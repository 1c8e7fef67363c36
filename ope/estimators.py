"""Off-policy estimators over per-row arrays: the base class, IPS, SNIPS and clipped IPS.

Each estimator is a small class. The base class validates (through ``OpeBatch``), gives the
estimate, its interval and the diagnostics; an estimator only says how one row contributes
(STYLE.md: one per-round function per estimator). The estimators that use a reward model (DM,
DR, SNDR, DRos, Switch-DR) are in ``ope.model_based``; every estimator the columns allow is run
by ``ope.suite.estimate_all``.

For slates logged one row per (decision, position), the value of a decision is the sum over its
positions; with per-position marginal propensities this is the item-position IPS of Li et al.
(2018), unbiased when the reward at a position depends only on the item there.

Every estimate is V̂ = f(z̄), a smooth function of the mean of a per-decision vector z_i: the
decision's summed terms for IPS-like estimators (f = identity), and each slot's numerator and
denominator for self-normalized ones. ``partial`` reduces a batch to mergeable statistics of z
(``ope.moments``), ``finish`` turns them into the estimate, its interval (``ope.intervals``:
normal, t, empirical Bernstein, Poisson bootstrap) and diagnostics, and ``estimate`` is the two
in one. So a log larger than memory is estimated chunk by chunk (``ope.streaming``) with the
same answer as in memory. obp's ``estimate_interval`` bootstraps differently, so intervals are not
comparable with obp's digit for digit; the point estimates are (tests/ope/test_ope_estimators.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from ope.batch import OpeBatch, OpeInputError
from ope.intervals import (
    INTERVALS,
    bernstein_interval,
    bootstrap_interval,
    check_alpha,
    delta_se,
    normal_interval,
    t_interval,
)
from ope.moments import BootstrapSums, Moments, WeightStats

N_BOOTSTRAP = 200
"""Default bootstrap replicates: enough for a 95% percentile interval's endpoints to settle to a
few percent of its width; raise it for reports."""


@dataclass(frozen=True)
class Estimate:
    """An estimate with its (1 − α) interval and diagnostics; ``interval`` names the method."""

    name: str
    value: float
    lo: float
    hi: float
    n_decisions: int
    diagnostics: dict[str, float] = field(default_factory=dict)
    interval: str = "normal"

    def as_dict(self) -> dict[str, float | str | int | dict[str, float]]:
        return {
            "name": self.name,
            "value": self.value,
            "lo": self.lo,
            "hi": self.hi,
            "interval": self.interval,
            "n_decisions": self.n_decisions,
            **self.diagnostics,
        }


@dataclass(frozen=True)
class Bounds:
    """What the Bernstein interval assumes: rewards (and reward-model values) in
    [reward_min, reward_max], importance weights at most ``weight_max``. ``weight_max`` None
    takes 1 / (the smallest logged propensity), i.e. assumes the logging policy's propensity
    floor is the smallest propensity it logged."""

    reward_min: float = 0.0
    reward_max: float = 1.0
    weight_max: float | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.reward_min) and math.isfinite(self.reward_max)):
            raise ValueError("reward_min and reward_max must be finite")
        if self.reward_max <= self.reward_min:
            raise ValueError(
                f"reward_max must exceed reward_min; got [{self.reward_min}, {self.reward_max}]"
            )
        if self.weight_max is not None and not self.weight_max > 0:
            raise ValueError(f"weight_max must be positive; got {self.weight_max}")


@dataclass(frozen=True)
class Partial:
    """What one chunk of decisions contributes to an estimator; ``merge`` adds chunks."""

    name: str
    moments: Moments
    weights: WeightStats
    value_min: float
    value_max: float
    slots: int
    min_pscore: float
    bootstrap: BootstrapSums | None = None

    def merge(self, other: Partial) -> Partial:
        if self.name != other.name:
            raise ValueError(f"cannot merge partials of {self.name} and {other.name}")
        if (self.bootstrap is None) != (other.bootstrap is None):
            raise ValueError("cannot merge a partial with bootstrap sums and one without")
        return Partial(
            name=self.name,
            moments=self.moments.merge(other.moments),
            weights=self.weights.merge(other.weights),
            value_min=min(self.value_min, other.value_min),
            value_max=max(self.value_max, other.value_max),
            slots=max(self.slots, other.slots),
            min_pscore=min(self.min_pscore, other.min_pscore),
            bootstrap=None if self.bootstrap is None else self.bootstrap.merge(other.bootstrap),  # type: ignore[arg-type]
        )


def per_decision(batch: OpeBatch, terms: np.ndarray) -> np.ndarray:
    """Sum of per-row terms within each decision, (n_decisions,)."""
    if batch.one_row_per_decision:
        return terms
    return np.bincount(batch.decision, weights=terms, minlength=batch.n_decisions)


def per_decision_slot(batch: OpeBatch, terms: np.ndarray) -> np.ndarray:
    """(n_decisions, n_slots) sums of per-row terms by decision and slot."""
    n_slots = batch.n_slots
    if batch.one_row_per_decision:
        out = np.zeros((batch.n_decisions, n_slots))
        out[batch.decision, batch.slot] = terms
        return out
    flat = np.bincount(
        batch.decision * n_slots + batch.slot, weights=terms, minlength=batch.n_decisions * n_slots
    )
    return flat.reshape(batch.n_decisions, n_slots)


def check_hyperparameter(name: str, value: float) -> float:
    """A weight threshold or shrinkage: a number in [0, inf] (obp's checks), returned as float."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number; got {value!r}")
    value = float(value)
    if np.isnan(value) or value < 0.0:
        raise ValueError(f"{name} must be in [0, inf]; got {value}")
    return value


def self_normalized_moments(batch: OpeBatch, y: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """(n_decisions, 1 + 2K) z_i = [Σ offset, A_i0, B_i0, A_i1, B_i1, ...] with A_ik = Σ w y and
    B_ik = Σ w over the decision's rows at slot k; slot by slot, so that zero-padding a chunk
    with fewer slots is exact."""
    n, k = batch.n_decisions, batch.n_slots
    z = np.zeros((n, 1 + 2 * k), order="F")  # column by column, for Moments.of
    w = batch.weight
    if batch.one_row_per_decision and k == 1:
        z[:, 0], z[:, 1], z[:, 2] = offset, w * y, w
    elif batch.one_row_per_decision:
        z[:, 0] = offset
        z[batch.decision, 1 + 2 * batch.slot] = w * y
        z[batch.decision, 2 + 2 * batch.slot] = w
    else:
        z[:, 0] = per_decision(batch, offset)
        z[:, 1::2] = per_decision_slot(batch, w * y)
        z[:, 2::2] = per_decision_slot(batch, w)
    return z


def self_normalized_value(z_mean: np.ndarray) -> float:
    """c̄ + Σ_k Ā_k / B̄_k, a slot with B̄_k = 0 contributing nothing."""
    a, b = z_mean[1::2], z_mean[2::2]
    ratio = np.divide(a, b, out=np.zeros_like(a), where=b > 0)
    return float(z_mean[0] + ratio.sum())


def self_normalized_gradient(z_mean: np.ndarray) -> np.ndarray:
    """∂/∂z̄ of ``self_normalized_value``: 1, then (1 / B̄_k, −Ā_k / B̄_k²) per slot."""
    a, b = z_mean[1::2], z_mean[2::2]
    inv = np.divide(1.0, b, out=np.zeros_like(b), where=b > 0)
    gradient = np.empty_like(z_mean)
    gradient[0] = 1.0
    gradient[1::2] = inv
    gradient[2::2] = -a * inv * inv
    return gradient


class Estimator:
    """Base class. A plain-mean estimator gives ``_round_terms`` (one term per row; a decision's
    terms are summed). A self-normalized one overrides ``_moments``, ``_value_of`` and
    ``_gradient``. ``_counts`` adds named row counts to the diagnostics, and ``_term_range`` the
    range of a row's term under ``Bounds`` for the Bernstein interval (None: not offered).

    ``requires`` names the optional ``OpeBatch`` columns (``q_hat``, ``v_hat``) the estimator
    reads; ``estimate`` raises ``OpeInputError`` naming them when the batch lacks them.
    """

    name = "base"
    requires: tuple[str, ...] = ()

    def _round_terms(self, batch: OpeBatch) -> np.ndarray:
        raise NotImplementedError

    def _moments(self, batch: OpeBatch) -> np.ndarray:
        return per_decision(batch, self._round_terms(batch))[:, None]

    def _value_of(self, z_mean: np.ndarray) -> float:
        return float(z_mean[0])

    def _gradient(self, z_mean: np.ndarray) -> np.ndarray:
        return np.ones(1)

    def _counts(self, batch: OpeBatch) -> dict[str, int]:
        return {}

    def _weight(self, batch: OpeBatch) -> np.ndarray:
        """The importance weights the diagnostics describe (the marginal ones by default)."""
        return batch.weight

    def _term_range(self, bounds: Bounds, weight_max: float) -> tuple[float, float] | None:
        return None

    def _min_pscore(self, batch: OpeBatch) -> float:
        """The smallest logging propensity the weights divide by (1 / it bounds the weights)."""
        return batch.min_pscore

    @property
    def has_bernstein(self) -> bool:
        """Whether the estimator is a plain mean of bounded terms (so Bernstein applies)."""
        return self._term_range(Bounds(), 1.0) is not None

    def interval_for(self, interval: str) -> str:
        """The interval this estimator gives when ``interval`` is asked for across estimators:
        the same, except t for a self-normalized estimator when Bernstein is asked."""
        return "t" if interval == "bernstein" and not self.has_bernstein else interval

    def supports(self, batch: OpeBatch) -> bool:
        """Whether the batch has every column this estimator needs."""
        return all(getattr(batch, column) is not None for column in self.requires)

    def _check_columns(self, batch: OpeBatch) -> None:
        missing = [column for column in self.requires if getattr(batch, column) is None]
        if missing:
            raise OpeInputError(
                f"{self.name} needs column(s) {', '.join(missing)}, which the input lacks"
            )

    def partial(self, batch: OpeBatch, *, n_bootstrap: int = 0, seed: int = 0) -> Partial:
        """This batch's mergeable statistics; with ``n_bootstrap`` > 0, also the Poisson
        bootstrap sums (decisions keyed by ``batch.decision_key``)."""
        self._check_columns(batch)
        if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, int) or n_bootstrap < 0:
            raise ValueError(f"n_bootstrap must be a non-negative int; got {n_bootstrap!r}")
        z = self._moments(batch)
        boot = None
        if n_bootstrap:
            boot = BootstrapSums.of(z, batch.decision_key, n_bootstrap=n_bootstrap, seed=seed)
        counts = self._counts(batch)
        if type(self)._weight is Estimator._weight:
            weights = batch.weight_stats  # shared by every estimator on marginal weights
        else:
            weights = WeightStats.of(self._weight(batch))
        return Partial(
            name=self.name,
            moments=Moments.of(z),
            weights=replace(weights, counts=counts) if counts else weights,
            value_min=batch.value_range[0],
            value_max=batch.value_range[1],
            slots=batch.n_slots,
            min_pscore=self._min_pscore(batch),
            bootstrap=boot,
        )

    def finish(
        self,
        partial: Partial,
        *,
        alpha: float = 0.05,
        interval: str = "normal",
        bounds: Bounds | None = None,
    ) -> Estimate:
        """The estimate, its (1 − alpha) interval of kind ``interval`` and the diagnostics."""
        alpha = check_alpha(alpha)
        if interval not in INTERVALS:
            raise ValueError(f"interval must be one of {', '.join(INTERVALS)}; got {interval!r}")
        moments = partial.moments
        value = self._value_of(moments.mean)
        se = delta_se(moments, self._gradient(moments.mean))
        if interval == "normal":
            lo, hi = normal_interval(value, se, alpha)
        elif interval == "t":
            lo, hi = t_interval(value, se, moments.n, alpha)
        elif interval == "bootstrap":
            if partial.bootstrap is None:
                raise ValueError("the bootstrap interval needs a partial made with n_bootstrap > 0")
            lo, hi = bootstrap_interval(partial.bootstrap, self._value_of, alpha)
        else:
            lo, hi = self._bernstein(partial, value, bounds or Bounds(), alpha)
        return Estimate(
            name=self.name,
            value=value,
            lo=lo,
            hi=hi,
            n_decisions=moments.n,
            diagnostics=partial.weights.diagnostics(),
            interval=interval,
        )

    def _bernstein(
        self, partial: Partial, value: float, bounds: Bounds, alpha: float
    ) -> tuple[float, float]:
        weight_max = bounds.weight_max or 1.0 / partial.min_pscore
        row_range = self._term_range(bounds, weight_max)
        if row_range is None:
            raise ValueError(
                f"{self.name} has no Bernstein interval: it is not a mean of bounded terms; "
                "use normal, t or bootstrap"
            )
        if partial.weights.max_weight > weight_max * (1 + 1e-12):
            raise ValueError(
                f"weight_max {weight_max} is below the largest weight in the data "
                f"({partial.weights.max_weight}); the Bernstein bound would not hold"
            )
        if partial.value_min < bounds.reward_min or partial.value_max > bounds.reward_max:
            raise ValueError(
                f"rewards and reward-model values lie in [{partial.value_min}, "
                f"{partial.value_max}], outside the bounds [{bounds.reward_min}, "
                f"{bounds.reward_max}] the Bernstein interval assumes"
            )
        lo_row, hi_row = row_range
        lo_term, hi_term = partial.slots * min(lo_row, 0.0), partial.slots * max(hi_row, 0.0)
        variance = float(partial.moments.covariance()[0, 0])
        return bernstein_interval(value, variance, partial.moments.n, hi_term - lo_term, alpha)

    def estimate(
        self,
        batch: OpeBatch,
        *,
        alpha: float = 0.05,
        interval: str = "normal",
        bounds: Bounds | None = None,
        n_bootstrap: int = N_BOOTSTRAP,
        seed: int = 0,
    ) -> Estimate:
        """The estimate with a (1 − alpha) interval of kind ``interval`` over decisions."""
        alpha = check_alpha(alpha)
        boot = n_bootstrap if interval == "bootstrap" else 0
        return self.finish(
            self.partial(batch, n_bootstrap=boot, seed=seed),
            alpha=alpha,
            interval=interval,
            bounds=bounds,
        )


class IPS(Estimator):
    """Inverse propensity scoring: V̂ = (1/N) Σ_i Σ_k w_ik r_ik, w = π_e / π_0."""

    name = "ipw"

    def _round_terms(self, batch: OpeBatch) -> np.ndarray:
        return batch.weight * batch.reward

    def _term_range(self, bounds: Bounds, weight_max: float) -> tuple[float, float] | None:
        return weighted_reward_range(bounds, weight_max)


def weighted_reward_range(bounds: Bounds, weight_max: float) -> tuple[float, float]:
    """Range of w·r for w in [0, weight_max] and r in the reward bounds."""
    return min(0.0, weight_max * bounds.reward_min), max(0.0, weight_max * bounds.reward_max)


class SNIPS(Estimator):
    """Self-normalized IPS, per slot: V̂ = Σ_k (Σ_i w_ik r_ik / Σ_i w_ik).

    The interval is the delta-method one, with influence
    ψ_i = Σ_k w_ik (r_ik − V̂_k) / mean_i(w_ik). A slot whose weights are all 0 contributes 0.
    """

    name = "snipw"

    def _moments(self, batch: OpeBatch) -> np.ndarray:
        return self_normalized_moments(batch, batch.reward, np.zeros(batch.n_rows))

    def _value_of(self, z_mean: np.ndarray) -> float:
        return self_normalized_value(z_mean)

    def _gradient(self, z_mean: np.ndarray) -> np.ndarray:
        return self_normalized_gradient(z_mean)


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

    def _counts(self, batch: OpeBatch) -> dict[str, int]:
        return {"clipped": int(np.sum(batch.weight > self.lambda_))}

    def _term_range(self, bounds: Bounds, weight_max: float) -> tuple[float, float] | None:
        return weighted_reward_range(bounds, min(weight_max, self.lambda_))
