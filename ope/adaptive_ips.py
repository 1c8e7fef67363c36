"""Adaptive IPS for rankings ("aips"): each row's importance weight is taken over the positions
its reward depends on under a user-behaviour model, given per row or chosen from the data.

Kiyohara, Uehara, Narita, Shimizu, Yamamoto & Saito, "Off-Policy Evaluation of Ranking Policies
under Diverse User Behavior", KDD 2023. The paper lets the behaviour c (a K × K adjacency matrix)
depend on the context: the reward at slot k depends on the items at the positions Φ_k(x, c), and

    V̂_AIPS = (1/N) Σ_i Σ_k [π_e(s_i(Φ_k(x_i, c_i)) | x_i) / π_0(s_i(Φ_k(x_i, c_i)) | x_i)] r_ik,

with π(s(Φ) | x) the probability that the positions Φ hold the logged items. It is unbiased when
c is the true behaviour (or any behaviour whose Φ_k contains the true ones), and has the smallest
variance of the unbiased IPS estimators of this kind when c is the true one.

**The behaviours here** are the three whose propensities the input contract carries (``BEHAVIORS``
in ``ope.batch``), each row's weight from one pair of columns:

- 0 "independent", Φ_k = {k}: the item-position marginal, ``pscore`` / ``target_pscore``;
- 1 "cascade", Φ_k = {1..k}: the prefix, ``pscore_cascade`` / ``target_pscore_cascade``;
- 2 "standard", Φ_k = {1..K}: the whole slate, ``pscore_slate`` / ``target_pscore_slate``.

**(a) Behaviour given** (the optional ``behavior`` column, per row): exactly the paper's
estimator restricted to these three Φ, per row, so a mix of behaviours across contexts and even
across the positions of one slate is allowed. Unbiased when each row's code is its true
behaviour (or a coarser one). It is a plain mean (d = 1): it streams, has a Bernstein interval,
and its paired lift is exact. Diagnostics: the row weights actually used, and the share of rows
under each behaviour (``independent_share``, ``cascade_share``, ``standard_share``).

**(b) Behaviour chosen from the data** (no ``behavior`` column). z_i holds, per behaviour, the
decision's summed terms Σ_k w_ik r_ik and summed weights Σ_k w_ik, and its row count (d = 7), so
the partials stream and merge exactly; ``finish`` chooses, from the merged moments, the
behaviour c minimizing the estimated MSE

    MSE^(c) = max(0, (V̂_c − V̂_ref)² − Var̂(V̂_c − V̂_ref)) + Var̂(V̂_c),

the squared bias estimated against a reference that is unbiased for any reward, with the gap's
own noise removed, plus the variance; the covariance of z gives both variances (ties go to the
more general behaviour). The reference is standard IPS, the estimator the criterion was designed
around, **unless its sample cannot support a variance estimate**: a behaviour takes part (as
reference or candidate) only when its per-decision weights have an effective sample size of at
least ``MIN_ESS`` and its mean row weight is within ``WEIGHT_TOLERANCE`` of 1 beyond twice its
standard error (every behaviour's weights have mean 1 under logging when the target stays in
the logging support); the reference is then the most general behaviour that takes part. Without
this, a log that has seen the target's likely slates a handful of times gives a standard IPS
estimate and variance that are both small by luck, and the criterion picks it exactly then
(in 60 of ``loop.coverage_world``'s simulated runs, uniform logging over 6 candidates and 200
decisions, it did so in 45: a bias of −0.13 on a value of 0.22 and 25% coverage of 95%
intervals; with the check, −0.008 and 90%, close to item-position IPS's −0.004 and 93%). With
no behaviour taking part, the one whose mean weight is closest to 1 is taken (on the loop
study's thin logs the standard weights are all nearly 0, and as a candidate standard IPS would
win with an estimate of 0 and no variance).

The interval is that of the chosen estimator with the choice held fixed (it does not count the
choice's own randomness), and the bootstrap replicates keep the choice too. The choice itself is
noisy: with no bias, (V̂_c − V̂_ref)² exceeds its variance about a third of the time, and a
heavy-tailed reference is chosen more often when it comes out low, so the data-driven estimate
leans low in such logs (tests/ope/test_ope_adaptive_ips.py measures it in the simulated world).
Diagnostics: ``behavior`` (the chosen code), ``reference`` (the code the bias was estimated
against), the estimated ``mse_<behaviour>`` of each (inf for one that did not take part), the
shares (1 for the chosen one) and the chosen weights' ESS, largest and mean weight.

**What is the paper's and what is simplified.** The estimator for a given behaviour, and the idea
of choosing the behaviour that minimizes an estimate of AIPS's MSE, are the paper's. The paper's
data-driven procedure partitions the context space with a tree and picks a behaviour from a
richer candidate set per leaf (and, in the authors' code, aiueola/kdd2023-aips, per position);
here one behaviour is chosen for every context and position, from the three above (the input
has no contexts, and other Φ need propensities the contract does not carry), with the bias
estimated against the reference above.

**Paired lift** (``ope.paired``, which the gate uses): with the ``behavior`` column the lift is
exact. Without it, ``_value_of`` sees only the means (no covariance, so no choice) and falls back
to the standard behaviour; such a lift is ``sips``'s under this name, so the paired lifts should
skip "aips" unless the rows carry ``behavior``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import numpy as np

from ope.batch import BEHAVIORS, OpeBatch, OpeInputError
from ope.estimators import (
    Bounds,
    Estimate,
    Estimator,
    Partial,
    per_decision,
    weighted_reward_range,
)
from ope.moments import BootstrapSums, Moments, WeightStats

INDEPENDENT, CASCADE, STANDARD = range(3)
COLUMNS = (
    ("pscore", "target_pscore"),
    ("pscore_cascade", "target_pscore_cascade"),
    ("pscore_slate", "target_pscore_slate"),
)
"""(logging, target) propensity columns of each behaviour, by code."""


def behavior_weight(batch: OpeBatch, behavior: int) -> np.ndarray:
    """(n,) every row's importance weight under one behaviour."""
    logging_column, target_column = COLUMNS[behavior]
    logged, target = getattr(batch, logging_column), getattr(batch, target_column)
    if logged is None or target is None:  # estimate() checks first; this guards direct calls
        raise ValueError(f"the batch has no {logging_column} / {target_column}")
    return target / logged


def row_propensities(batch: OpeBatch) -> tuple[np.ndarray, np.ndarray]:
    """(logging, target) (n,) propensities of every row under its own ``behavior``."""
    behavior = batch.behavior
    if behavior is None:
        raise ValueError("the batch has no behavior column")
    logged, target = np.zeros(batch.n_rows), np.zeros(batch.n_rows)
    for code in np.unique(behavior):
        rows = behavior == code
        logged[rows] = getattr(batch, COLUMNS[code][0])[rows]
        target[rows] = getattr(batch, COLUMNS[code][1])[rows]
    return logged, target


WEIGHT_TOLERANCE = 0.1
"""How far a behaviour's mean row weight may sit from 1 beyond twice its standard error for it
to take part in the choice (the gate's default tolerance)."""

MIN_ESS = 30.0
"""The smallest effective sample size (Σ_i W_i)² / Σ_i W_i² of a behaviour's per-decision summed
weights W_i for it to take part in the choice: below it, its variance estimate rests on a handful
of decisions."""

DIM = 7
"""z of the data-driven AIPS per decision: Σ_k w_ik r_ik for each behaviour, Σ_k w_ik for each
behaviour, and the decision's row count."""


@dataclass(frozen=True)
class BehaviorChoice:
    """The data-driven choice: the chosen code, the reference its bias was estimated against,
    each behaviour's estimated MSE (inf where it did not qualify) and mean row weight."""

    behavior: int
    reference: int
    mse: np.ndarray
    mean_weight: np.ndarray


def choose_behavior(moments: Moments) -> BehaviorChoice:
    """The behaviour minimizing max(0, (V̂_c − V̂_ref)² − Var̂(V̂_c − V̂_ref)) + Var̂(V̂_c), from the
    moments of z (``DIM``).

    A behaviour qualifies when its per-decision summed weights have an effective sample size of
    at least ``MIN_ESS`` and its mean row weight is within ``WEIGHT_TOLERANCE`` of 1 beyond twice
    its standard error; the reference is the most general one that qualifies: standard IPS
    unless its sample cannot support a variance estimate. With none qualifying, the one whose
    mean weight is closest to 1 is taken: its weights carry the most of the target's mass (a
    behaviour whose weights are all nearly 0 would otherwise win with an estimate of 0 and no
    variance; the effective sample size cannot tell, as it ignores the weights' scale). Ties go
    to the more general behaviour; with fewer than two decisions the choice is standard."""
    n = moments.n
    value, weight, rows = moments.mean[:3], moments.mean[3:6], moments.mean[6]
    if n < 2 or rows <= 0:
        return BehaviorChoice(STANDARD, STANDARD, np.full(3, np.inf), np.full(3, np.nan))
    cov = moments.covariance() / n  # covariance of the means of z
    mean_weight = weight / rows
    # The ratio estimator's standard error: the gradient of W̄_c / K̄ is (1/K̄, −W̄_c/K̄²).
    ratio_var = (
        np.diag(cov)[3:6] - 2.0 * mean_weight * cov[3:6, 6] + mean_weight**2 * cov[6, 6]
    ) / rows**2
    qualifies = np.abs(mean_weight - 1.0) <= 2.0 * np.sqrt(np.maximum(ratio_var, 0.0)) + (
        WEIGHT_TOLERANCE
    )
    sum_sq = np.diag(moments.m2)[3:6] + n * weight**2  # Σ_i W_ic²
    ess = np.divide((n * weight) ** 2, sum_sq, out=np.zeros(3), where=sum_sq > 0)
    qualifies &= ess >= MIN_ESS
    if not qualifies.any():  # the behaviour whose weights carry most of the target's mass
        qualifies[int(np.argmin(np.abs(mean_weight - 1.0)))] = True
    reference = int(np.flatnonzero(qualifies).max())
    variance = np.diag(cov)[:3]
    gap = value - value[reference]
    gap_variance = variance + variance[reference] - 2.0 * cov[:3, reference]
    mse = np.where(qualifies, np.maximum(gap**2 - gap_variance, 0.0) + variance, np.inf)
    chosen = min(range(3), key=lambda code: (mse[code], -code))  # ties: the more general one
    return BehaviorChoice(int(chosen), reference, mse, mean_weight)


@dataclass(frozen=True)
class BehaviorPartial(Partial):
    """A partial of the data-driven AIPS: beside the usual sums, each behaviour's weight
    statistics and smallest logging propensity, so that ``finish`` reports the chosen one's."""

    by_behavior: tuple[WeightStats, ...] = field(default=())
    min_pscores: tuple[float, ...] = field(default=())

    def merge(self, other: Partial) -> BehaviorPartial:
        if not isinstance(other, BehaviorPartial):
            raise ValueError(
                "cannot merge an aips partial with the behavior column and one without"
            )
        merged = Partial.merge(self, other)
        return BehaviorPartial(
            **{f.name: getattr(merged, f.name) for f in fields(Partial)},
            by_behavior=tuple(
                a.merge(b) for a, b in zip(self.by_behavior, other.by_behavior, strict=True)
            ),
            min_pscores=tuple(
                min(a, b) for a, b in zip(self.min_pscores, other.min_pscores, strict=True)
            ),
        )


class _Chosen(Estimator):
    """The data-driven AIPS once its behaviour is chosen: a plain mean of that behaviour's
    decision terms, finished from the partial ``project`` narrows to them."""

    name = "aips"

    def _term_range(self, bounds: Bounds, weight_max: float) -> tuple[float, float] | None:
        return weighted_reward_range(bounds, weight_max)


def project(partial: BehaviorPartial, code: int) -> Partial:
    """The partial of behaviour ``code`` alone: its component of z (moments and bootstrap
    sums), its weight statistics and its smallest logging propensity."""
    moments = partial.moments
    keep = [code]
    boot = partial.bootstrap
    return Partial(
        name=partial.name,
        moments=Moments(moments.n, moments.mean[keep], moments.m2[np.ix_(keep, keep)]),
        weights=partial.by_behavior[code],
        value_min=partial.value_min,
        value_max=partial.value_max,
        slots=partial.slots,
        min_pscore=partial.min_pscores[code],
        bootstrap=None
        if boot is None
        else BootstrapSums(boot.weighted[:, keep], boot.counts, boot.seed),
    )


class AdaptiveIPS(Estimator):
    """Adaptive IPS over slates (see the module docstring): with the ``behavior`` column, each
    row weighted under its own behaviour; without it, the behaviour with the smallest estimated
    MSE. Needs the cascade and slate propensity pairs (with ``behavior``, only those of the
    behaviours its rows use); runs on slates only (on one slot every behaviour is ``ipw``)."""

    name = "aips"
    requires = ("pscore_cascade", "target_pscore_cascade", "pscore_slate", "target_pscore_slate")

    def _needed(self, batch: OpeBatch) -> tuple[str, ...]:
        if batch.behavior is None:
            return self.requires
        return tuple(c for code in np.unique(batch.behavior) for c in COLUMNS[code] if code > 0)

    def supports(self, batch: OpeBatch) -> bool:
        return batch.n_slots > 1 and all(getattr(batch, c) is not None for c in self._needed(batch))

    def _check_columns(self, batch: OpeBatch) -> None:
        missing = [column for column in self._needed(batch) if getattr(batch, column) is None]
        if missing:
            why = " for the behaviours in its behavior column" if batch.behavior is not None else ""
            raise OpeInputError(
                f"{self.name} needs column(s) {', '.join(missing)}{why}, which the input lacks"
            )

    def _weight(self, batch: OpeBatch) -> np.ndarray:
        if batch.behavior is None:
            return behavior_weight(batch, STANDARD)  # the fallback's; finish reports the chosen
        logged, target = row_propensities(batch)
        return target / logged

    def _round_terms(self, batch: OpeBatch) -> np.ndarray:
        return self._weight(batch) * batch.reward

    def _moments(self, batch: OpeBatch) -> np.ndarray:
        if batch.behavior is not None:
            return per_decision(batch, self._round_terms(batch))[:, None]
        z = np.zeros((batch.n_decisions, DIM), order="F")
        for code in range(3):
            weight = behavior_weight(batch, code)
            z[:, code] = per_decision(batch, weight * batch.reward)
            z[:, 3 + code] = per_decision(batch, weight)
        z[:, 6] = per_decision(batch, np.ones(batch.n_rows))
        return z

    def _value_of(self, z_mean: np.ndarray) -> float:
        """z̄ itself with the behaviour given; standard IPS (the fallback, see the module
        docstring) when called on the data-driven z̄ without a choice."""
        return float(z_mean[0] if z_mean.size == 1 else z_mean[STANDARD])

    def _gradient(self, z_mean: np.ndarray) -> np.ndarray:
        return np.ones(1) if z_mean.size == 1 else np.eye(z_mean.size)[STANDARD]

    def _counts(self, batch: OpeBatch) -> dict[str, int]:
        if batch.behavior is None:
            return {}
        counts = np.bincount(batch.behavior, minlength=3)
        return {name: int(count) for name, count in zip(BEHAVIORS, counts, strict=True)}

    def _min_pscore(self, batch: OpeBatch) -> float:
        if batch.behavior is None:
            return min(float(np.min(getattr(batch, COLUMNS[code][0]))) for code in range(3))
        return float(np.min(row_propensities(batch)[0]))

    def _term_range(self, bounds: Bounds, weight_max: float) -> tuple[float, float] | None:
        return weighted_reward_range(bounds, weight_max)

    def partial(self, batch: OpeBatch, *, n_bootstrap: int = 0, seed: int = 0) -> Partial:
        part = super().partial(batch, n_bootstrap=n_bootstrap, seed=seed)
        if batch.behavior is not None:
            return part
        return BehaviorPartial(
            **{f.name: getattr(part, f.name) for f in fields(Partial)},
            by_behavior=tuple(WeightStats.of(behavior_weight(batch, code)) for code in range(3)),
            min_pscores=tuple(float(np.min(getattr(batch, COLUMNS[c][0]))) for c in range(3)),
        )

    def finish(
        self,
        partial: Partial,
        *,
        alpha: float = 0.05,
        interval: str = "normal",
        bounds: Bounds | None = None,
    ) -> Estimate:
        """With the behaviour given, the plain mean's estimate. Otherwise the chosen
        behaviour's estimate, interval and weight diagnostics, with the choice reported."""
        if partial.moments.dim == 1:
            return super().finish(partial, alpha=alpha, interval=interval, bounds=bounds)
        if not isinstance(partial, BehaviorPartial):
            raise ValueError("the data-driven aips needs the partial its own partial() made")
        choice = choose_behavior(partial.moments)
        code = choice.behavior
        estimate = _Chosen().finish(
            project(partial, code), alpha=alpha, interval=interval, bounds=bounds
        )
        diagnostics = dict(estimate.diagnostics)
        diagnostics["behavior"] = float(code)
        diagnostics["reference"] = float(choice.reference)
        for index, name in enumerate(BEHAVIORS):
            diagnostics[f"{name}_share"] = float(index == code)
            diagnostics[f"mse_{name}"] = float(choice.mse[index])
        return replace(estimate, diagnostics=diagnostics)
