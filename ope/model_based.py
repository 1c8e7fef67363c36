"""Estimators that use a reward model: DM, DR, SNDR, DRos and Switch-DR.

Per-row inputs (DESIGN.md §5), all (n,) over rows i (one per decision, or per decision and
position k for slates):

- ``reward`` r_i, ``pscore`` π_0(a_i | x_i), ``target_pscore`` π_e(a_i | x_i), so that the
  importance weight is w_i = π_e(a_i | x_i) / π_0(a_i | x_i);
- ``q_hat`` q̂_i = q̂(x_i, a_i), the reward model at the logged action;
- ``v_hat`` v̂_i = Σ_a π_e(a | x_i) q̂(x_i, a), the reward model averaged over the target policy.

obp 0.4.1 takes the dense ``action_dist`` π_e and ``estimated_rewards_by_reg_model`` q̂, both
(n_rounds, n_actions, len_list); with position 0, ``target_pscore[i] = action_dist[i, a_i, 0]``,
``q_hat[i] = q̂[i, a_i, 0]`` and ``v_hat[i] = Σ_a action_dist[i, a, 0] q̂[i, a, 0]`` give the same
point estimates (tests/ope/test_ope_estimators.py checks them to 1e-9). The names are obp's, with
``dros`` for obp's ``dr-os``.

Every estimator here is V̂ = (1/N) Σ_i Σ_k [v̂_ik + g(w_ik) (r_ik − q̂_ik)] for some weight map g
(SNDR normalizes instead); the interval is the normal one over decisions (``ope.estimators``).
"""

from __future__ import annotations

import numpy as np

from ope.batch import OpeBatch
from ope.estimators import (
    Bounds,
    Estimator,
    check_hyperparameter,
    self_normalized_gradient,
    self_normalized_moments,
    self_normalized_value,
)


def _model_column(batch: OpeBatch, name: str) -> np.ndarray:
    values = getattr(batch, name)
    if values is None:  # estimate() checks first; this guards direct calls
        raise ValueError(f"the batch has no {name}")
    return values


def _residual(batch: OpeBatch) -> np.ndarray:
    """(n,) r_i − q̂_i."""
    return batch.reward - _model_column(batch, "q_hat")


def corrected_range(bounds: Bounds, correction_weight_max: float) -> tuple[float, float]:
    """Range of v̂ + g (r − q̂) for r, q̂, v̂ in the reward bounds and g in [0, g_max]."""
    spread = bounds.reward_max - bounds.reward_min
    return (
        bounds.reward_min - correction_weight_max * spread,
        bounds.reward_max + correction_weight_max * spread,
    )


class DM(Estimator):
    """Direct method: V̂_DM = (1/N) Σ_i Σ_k v̂_ik, v̂_ik = Σ_a π_e(a | x_ik) q̂(x_ik, a).

    Needs ``v_hat``. Biased by the reward model's error averaged over the target policy; the
    interval covers E[V̂_DM], not the policy value, unless q̂ is right. obp's ``DirectMethod``
    (Beygelzimer & Langford 2009; Dudík et al. 2014).
    """

    name = "dm"
    requires = ("v_hat",)

    def _round_terms(self, batch: OpeBatch) -> np.ndarray:
        return _model_column(batch, "v_hat").copy()

    def _term_range(self, bounds: Bounds, weight_max: float) -> tuple[float, float] | None:
        return corrected_range(bounds, 0.0)


class DR(Estimator):
    """Doubly robust: V̂_DR = (1/N) Σ_i Σ_k [v̂_ik + w_ik (r_ik − q̂_ik)].

    Unbiased when the propensities are right, whatever q̂ (the model only acts as a control
    variate), and consistent when q̂ is right. Needs ``q_hat`` and ``v_hat``. Dudík, Erhan,
    Langford & Li, "Doubly Robust Policy Evaluation and Optimization", Statistical Science 2014;
    obp's ``DoublyRobust``.
    """

    name = "dr"
    requires = ("q_hat", "v_hat")

    def _round_terms(self, batch: OpeBatch) -> np.ndarray:
        return _model_column(batch, "v_hat") + batch.weight * _residual(batch)

    def _term_range(self, bounds: Bounds, weight_max: float) -> tuple[float, float] | None:
        return corrected_range(bounds, weight_max)


class SNDR(Estimator):
    """Self-normalized doubly robust, per slot k:

        V̂_SNDR = (1/N) Σ_i Σ_k v̂_ik + Σ_k [Σ_i w_ik (r_ik − q̂_ik) / Σ_i w_ik].

    With one slot this is obp's ``SelfNormalizedDoublyRobust``, whose per-round term is
    v̂_i + w_i (r_i − q̂_i) / mean_j(w_j). Like SNIPS, each slot is normalized by its own weights,
    and a slot whose weights are all 0 contributes no correction (obp would divide by 0). The
    interval is the delta-method one, ψ_i = Σ_k [v̂_ik + w_ik (e_ik − ē_k) / mean_i(w_ik)] with
    e = r − q̂ and ē_k the slot's weighted mean residual. Needs ``q_hat`` and ``v_hat``. Kallus &
    Uehara, "Intrinsically Efficient, Stable, and Bounded Off-Policy Evaluation for Reinforcement
    Learning", NeurIPS 2019 (as obp cites).
    """

    name = "sndr"
    requires = ("q_hat", "v_hat")

    def _moments(self, batch: OpeBatch) -> np.ndarray:
        return self_normalized_moments(batch, _residual(batch), _model_column(batch, "v_hat"))

    def _value_of(self, z_mean: np.ndarray) -> float:
        return self_normalized_value(z_mean)

    def _gradient(self, z_mean: np.ndarray) -> np.ndarray:
        return self_normalized_gradient(z_mean)


def shrunk_weight(weight: np.ndarray, lambda_: float) -> np.ndarray:
    """Su et al.'s optimistic shrinkage: w_o = λ w / (w² + λ), (n,).

    λ = 0 gives 0 (DM) and λ = inf gives w (DR). obp 0.4.1 computes λw / (w² + λ) as written,
    which is 0/0 = nan at λ = 0 for rows with w = 0, and inf/inf = nan at λ = inf.
    """
    if lambda_ == np.inf:
        return weight.copy()
    if lambda_ == 0.0:
        return np.zeros_like(weight)
    return (lambda_ * weight) / (weight**2 + lambda_)


class DRos(Estimator):
    """Doubly robust with optimistic shrinkage:

        V̂_DRos = (1/N) Σ_i Σ_k [v̂_ik + w_o(w_ik; λ) (r_ik − q̂_ik)],  w_o(w; λ) = λ w / (w² + λ).

    λ in [0, inf]: λ = 0 is DM and λ → inf is DR. Shrinking large weights lowers the variance and
    adds bias, so the interval covers E[V̂_DRos]. Needs ``q_hat`` and ``v_hat``. Su, Dimakopoulou,
    Krishnamurthy & Dudík, "Doubly Robust Off-Policy Evaluation with Shrinkage", ICML 2020;
    obp's ``DoublyRobustWithShrinkage(lambda_=λ)`` (obp's name ``dr-os``; obp's default λ = 0 is
    DM, so ours defaults to λ = 1, the value obp's own examples use).

    Args:
        lambda_: the shrinkage λ.
    """

    name = "dros"
    requires = ("q_hat", "v_hat")

    def __init__(self, lambda_: float = 1.0) -> None:
        self.lambda_ = check_hyperparameter("lambda_", lambda_)

    def _round_terms(self, batch: OpeBatch) -> np.ndarray:
        shrunk = shrunk_weight(batch.weight, self.lambda_)
        return _model_column(batch, "v_hat") + shrunk * _residual(batch)

    def _term_range(self, bounds: Bounds, weight_max: float) -> tuple[float, float] | None:
        # λw / (w² + λ) peaks at w = √λ with value √λ / 2, and never exceeds w.
        peak = weight_max if self.lambda_ == np.inf else np.sqrt(self.lambda_) / 2.0
        return corrected_range(bounds, min(weight_max, peak))


class SwitchDR(Estimator):
    """Switch doubly robust: DR on rows whose weight is at most τ, DM on the others:

        V̂_Switch = (1/N) Σ_i Σ_k [v̂_ik + w_ik 1{w_ik ≤ τ} (r_ik − q̂_ik)].

    A row with w = τ exactly keeps its DR term (obp's ``iw <= tau``). τ in [0, inf]: τ = inf is
    DR; τ = 0 is DM except on rows with w = 0, where the terms agree anyway. The interval covers
    E[V̂_Switch]. Diagnostic ``switched_share``: the share of rows with w > τ. Needs ``q_hat`` and
    ``v_hat``. Wang, Agarwal & Dudík, "Optimal and Adaptive Off-policy Evaluation in Contextual
    Bandits", ICML 2017; obp 0.4.1's ``SwitchDoublyRobust(tau=τ)`` (default τ = 1; later obp
    versions call the parameter ``lambda_``).

    Args:
        tau: the largest weight whose row keeps its importance-weighted correction.
    """

    name = "switch-dr"
    requires = ("q_hat", "v_hat")

    def __init__(self, tau: float = 1.0) -> None:
        self.tau = check_hyperparameter("tau", tau)

    def _round_terms(self, batch: OpeBatch) -> np.ndarray:
        w = batch.weight
        kept = np.where(w <= self.tau, w, 0.0)
        return _model_column(batch, "v_hat") + kept * _residual(batch)

    def _counts(self, batch: OpeBatch) -> dict[str, int]:
        return {"switched": int(np.sum(batch.weight > self.tau))}

    def _term_range(self, bounds: Bounds, weight_max: float) -> tuple[float, float] | None:
        return corrected_range(bounds, min(weight_max, self.tau))
