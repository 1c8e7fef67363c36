"""The exploration budget, and the per-request choice of exploration within it.

The operator sets a budget b and a propensity floor f. On one request with calibrated scores
p_i = P(play | examined) and position examination weights θ_k (default 1/log2(k+2)), a policy
with marginals P(i at k) expects

    V(π) = Σ_k θ_k Σ_i P(i at k)·p_i   plays,

and exploration costs V(greedy) − V(π) ≥ 0 plays. A policy is within budget when that cost is at
most b·V(greedy) (b = 0.005: at most 0.5% of the greedy slate's expected plays). It meets the
floor when no positive marginal propensity P(i at k) is below f (the weights item-position IPS
divides by); for Plackett-Luce, whose marginals are not logged, when no conditional propensity
is below f.

For each family the cost is exact or an exact upper bound, never an estimate:

- ε-greedy with pool M: cost = ε·C(M), C(M) = Σ_{k∈E} θ_k (p_{g_k} − mean_{P'} p): linear in ε,
  so the largest ε is b·V(greedy)/C(M), capped at 1. The smallest marginal is ε/M'. The pool is
  the largest M ≤ ``pool`` whose ε meets the floor: coverage first, since overlap is what OPE
  needs; a narrower pool is cheaper per draw and leaves room for a larger ε.
- Top-K random insertion: cost = ε·C(M), C(M) = mean_{j∈E} [Σ_{k≥j} θ_k p_{g_k}
  − θ_j mean_B p − Σ_{k>j} θ_k p_{g_{k-1}}]; the smallest marginal is ε/(|E|(M − K)), and 1 − ε
  when ε < 1.
- Plackett-Luce has no closed-form marginals, so its cost is bounded instead. Its weights w are
  nondecreasing in p (they come from the same scores), so whatever prefix was drawn, the expected
  p of a softmax draw is at least the w-weighted mean of p over the pool without its top k:
  L_k = Σ_{rank ≥ k} w_i p_i / Σ_{rank ≥ k} w_i (removing the top k lowers the weighted mean the
  most: at the optimum one removes the k largest w_i (p_i − L), which are the top k); a uniform
  draw likewise has at least the plain mean of ranks ≥ k. Hence cost ≤ Σ_k θ_k (p_{g_k} − L_k),
  an exact bound, tight as T → 0 and conservative otherwise (later positions recover the top
  candidates an early draw skipped, which the bound ignores). It grows with T (the tilted mean
  falls as the tilt 1/T falls), so the temperature is found by a safeguarded root search in log T
  (``explore.pl_bound``, compiled).
  The floor holds on every conditional propensity with the per-position uniform mix γ = f·M
  (γ/(M − j) ≥ f), which needs M ≤ 1/f; when that mix alone breaks the budget, the pool is
  narrowed by bisection.

When even the least exploration breaks the budget or the floor, the request is served greedy.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any, Literal

import numpy as np

from explore.epsilon_greedy import EpsilonGreedySlate
from explore.greedy import GreedySlate
from explore.plackett_luce import PlackettLuceSlate
from explore.policy import Policy, exploring_mask, top_order
from explore.random_insertion import TopKRandomInsertion

TEMPERATURE_RANGE = (1e-4, 1e2)  # × the spread of the pool's scores


@dataclass(frozen=True, kw_only=True)
class ExplorationBudget:
    """``relative_cost``: the most exploration may cost, as a share of the greedy slate's
    expected plays (0.005 = 0.5%). ``floor``: the smallest positive marginal propensity
    exploration may log (the conditional one for Plackett-Luce; 0: none). ``examination``:
    θ_k, ``"log"`` = 1/log2(k+2), ``"inverse"`` = 1/(k+1), or explicit nonincreasing weights,
    one per position."""

    relative_cost: float = 0.005
    floor: float = 0.0
    examination: Literal["log", "inverse"] | tuple[float, ...] = "log"

    def __post_init__(self) -> None:
        if not (np.isfinite(self.relative_cost) and self.relative_cost >= 0.0):
            raise ValueError(f"relative_cost must be finite and >= 0; got {self.relative_cost}")
        if not 0.0 <= self.floor < 1.0:
            raise ValueError(f"floor must be in [0, 1); got {self.floor}")
        if isinstance(self.examination, str):
            if self.examination not in ("log", "inverse"):
                raise ValueError(
                    f"examination must be 'log', 'inverse' or a tuple of weights; "
                    f"got {self.examination!r}"
                )
            return
        theta = np.asarray(self.examination, dtype=np.float64)
        if theta.ndim != 1 or theta.size == 0 or not np.all(np.isfinite(theta) & (theta >= 0)):
            raise ValueError(
                f"examination weights must be a non-empty tuple of finite values >= 0; "
                f"got {self.examination}"
            )
        if np.any(np.diff(theta) > 0):
            raise ValueError(f"examination weights must be nonincreasing; got {self.examination}")

    def weights(self, k: int) -> np.ndarray:
        """θ_k for positions 0..k−1 (read-only)."""
        examination = self.examination
        return _examination_weights(
            examination if isinstance(examination, str) else tuple(examination), k
        )

    def params(self) -> dict[str, Any]:
        examination = (
            self.examination if isinstance(self.examination, str) else list(self.examination)
        )
        return {"budget": self.relative_cost, "floor": self.floor, "examination": examination}


@lru_cache(maxsize=256)
def _examination_weights(examination: str | tuple[float, ...], k: int) -> np.ndarray:
    positions = np.arange(k, dtype=np.float64)
    if examination == "log":
        theta = 1.0 / np.log2(positions + 2.0)
    elif examination == "inverse":
        theta = 1.0 / (positions + 1.0)
    else:
        theta = np.asarray(examination, dtype=np.float64)
        if theta.size < k:
            raise ValueError(f"examination has {theta.size} weights; a slate of {k} needs {k}")
        theta = theta[:k]
    theta.flags.writeable = False
    return theta


@dataclass(frozen=True)
class Calibration:
    """What one request gets: the policy with its exploration parameters, and the relative cost
    of its exploration (exact, or an exact upper bound when ``cost_exact`` is False).
    ``ranked``: the greedy order of the top candidates (``top_order``, at least the policy's
    pool), when the calibration computed it, so that deciding need not rank them again."""

    policy: Policy
    relative_cost: float
    cost_exact: bool
    ranked: np.ndarray | None = field(default=None, compare=False, repr=False)

    def exploration(self, budget: ExplorationBudget) -> dict[str, Any]:
        """The parameters actually used, as the decision record logs them."""
        return {
            "policy": self.policy.name,
            **self.policy.params(),
            **budget.params(),
            "expected_cost": self.relative_cost,
            "cost_exact": self.cost_exact,
        }


def expected_plays(marginals: np.ndarray, scores: np.ndarray, theta: np.ndarray) -> float:
    """V(π) = Σ_k θ_k Σ_i P(i at k)·p_i for marginals (K, n), scores p (n,), weights θ (K,)."""
    return float(theta[: marginals.shape[0]] @ marginals @ scores)


def validate_probabilities(scores: np.ndarray) -> np.ndarray:
    """Calibrated exploration needs P(play) scores: finite and in [0, 1]."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.size and np.minimum.reduce(scores) >= 0.0 and np.maximum.reduce(scores) <= 1.0:
        return scores  # a NaN fails both comparisons, and ±inf one of them
    bad = np.flatnonzero(~(np.isfinite(scores) & (scores >= 0.0) & (scores <= 1.0)))
    if bad.size:
        raise ValueError(
            f"scores must be calibrated P(play) in [0, 1] for an exploration budget; "
            f"got {scores[bad[0]]} at index {bad[0]}"
        )
    return scores


def _greedy(cost_exact: bool = True, ranked: np.ndarray | None = None) -> Calibration:
    return Calibration(
        policy=GreedySlate(), relative_cost=0.0, cost_exact=cost_exact, ranked=ranked
    )


def _largest_ratio(allowed: float, cost: np.ndarray) -> np.ndarray:
    """ε = allowed / cost, capped at 1 (1 where exploring costs nothing)."""
    costly = cost > 0.0
    return np.where(costly, np.minimum(1.0, allowed / np.where(costly, cost, 1.0)), 1.0)


def calibrate_epsilon_greedy(
    base: EpsilonGreedySlate, scores: np.ndarray, k: int, budget: ExplorationBudget
) -> Calibration:
    """The largest pool (≤ ``base.pool``) and its largest ε within budget and floor."""
    n = scores.size
    k = min(k, n)
    m_max = base._pool_size(n, k)
    ranked = top_order(scores, m_max)
    p = scores[ranked]
    theta = budget.weights(k)
    v_greedy = float(theta @ p[:k])
    layout = _pool_layout(base.positions, k, m_max, first_pool=k)
    if layout.n_explore == 0:
        return _greedy(ranked=ranked)
    head = p[:k]
    cumulative = p.cumsum()
    # The fixed positions' candidates are not in the free pool.
    fixed_sum = head[~layout.explores].sum() if layout.n_fixed else 0.0
    explored = layout.explores if layout.n_fixed else slice(None)  # a view when all explore
    theta_e = theta[explored]
    explored_value = float(theta_e @ head[explored])
    theta_sum = np.add.reduce(theta_e)
    allowed = budget.relative_cost * v_greedy
    if budget.floor == 0.0:  # the deepest pool, in floats: the last entry of the arrays below
        mean_free = float(cumulative[-1] - fixed_sum) / float(layout.free_sizes[-1])
        found = _deepest_pool(base, m_max, explored_value - theta_sum * mean_free, allowed)
        if found is not None:
            return _calibration(*found, v_greedy, ranked)
    mean_free = (cumulative[k - 1 :] - fixed_sum) / layout.free_sizes  # each pool M = K..M_max
    cost = np.maximum(explored_value - theta_sum * mean_free, 0.0)
    eps = _largest_ratio(allowed, cost)
    ok = eps > 0.0
    if budget.floor > 0.0:
        ok &= eps / layout.free_sizes >= budget.floor
    return _largest_allowed(base, eps, layout.pools, cost, ok, v_greedy, ranked)


def _deepest_pool(
    base: EpsilonGreedySlate | TopKRandomInsertion, m_max: int, cost: float, allowed: float
) -> tuple[EpsilonGreedySlate | TopKRandomInsertion, float, float] | None:
    """(the policy, its ε, its cost in plays at ε = 1) for the deepest pool, when no floor is
    set: its largest ε is then the answer whenever it is positive (None otherwise). ``cost`` is
    that pool's cost at ε = 1 before clipping at 0."""
    cost = max(float(cost), 0.0)
    eps = min(1.0, allowed / cost) if cost > 0.0 else 1.0
    if not eps > 0.0:
        return None
    return replace(base, epsilon=eps, pool=m_max), eps, cost


def _calibration(
    policy: Policy, eps: float, cost: float, v_greedy: float, ranked: np.ndarray
) -> Calibration:
    """The calibration of an ε-greedy or random insertion policy, whose cost is exact."""
    return Calibration(
        policy=policy,
        relative_cost=float(eps * cost / v_greedy) if v_greedy > 0 else 0.0,
        cost_exact=True,
        ranked=ranked,
    )


@dataclass(frozen=True)
class _PoolLayout:
    """What ε-greedy's and random insertion's calibrations need that depends only on the
    exploring positions, K and the deepest pool (arrays read-only)."""

    explores: np.ndarray  # (K,) bool
    n_explore: int
    n_fixed: int
    pools: np.ndarray  # the pool sizes M tried, ascending
    free_sizes: np.ndarray  # M − |fixed positions|, as floats
    beyond_sizes: np.ndarray  # M − K, as floats


@lru_cache(maxsize=256)
def _pool_layout(
    positions: tuple[int, ...] | None, k: int, m_max: int, first_pool: int
) -> _PoolLayout:
    explores = exploring_mask(positions, k)
    n_explore = int(explores.sum())
    pools = np.arange(first_pool, m_max + 1)
    free_sizes = (pools - (k - n_explore)).astype(np.float64)
    beyond_sizes = (pools - k).astype(np.float64)
    for array in (pools, free_sizes, beyond_sizes):
        array.flags.writeable = False
    return _PoolLayout(
        explores=explores,
        n_explore=n_explore,
        n_fixed=k - n_explore,
        pools=pools,
        free_sizes=free_sizes,
        beyond_sizes=beyond_sizes,
    )


def _largest_allowed(
    base: EpsilonGreedySlate | TopKRandomInsertion,
    eps: np.ndarray,
    pools: np.ndarray,
    cost: np.ndarray,
    ok: np.ndarray,
    v_greedy: float,
    ranked: np.ndarray,
) -> Calibration:
    """The policy with the deepest pool whose ε is allowed (``ok``), at that ε; greedy when none
    is. ``cost`` is the cost in plays at ε = 1 for each pool, exact for these families."""
    allowed = ok.nonzero()[0]
    if allowed.size == 0:
        return _greedy(ranked=ranked)
    best = int(allowed[-1])
    policy = replace(base, epsilon=float(eps[best]), pool=int(pools[best]))
    return _calibration(policy, eps[best], cost[best], v_greedy, ranked)


def calibrate_random_insertion(
    base: TopKRandomInsertion, scores: np.ndarray, k: int, budget: ExplorationBudget
) -> Calibration:
    """The largest pool (≤ ``base.pool``) and its largest ε within budget and floor."""
    n = scores.size
    k = min(k, n)
    m_max = base._pool_size(n, k)
    if m_max <= k:
        return _greedy()
    layout = _pool_layout(base.positions, k, m_max, first_pool=k + 1)
    if layout.n_explore == 0:
        return _greedy()
    ranked = top_order(scores, m_max)
    p = scores[ranked]
    theta = budget.weights(k)
    head = p[:k]
    v_greedy = float(theta @ head)
    tail = (theta * head)[::-1].cumsum()[::-1]  # Σ_{k' ≥ j} θ_k' p_{g_k'}
    moved = np.empty(k)  # θ_k' p_{g_{k'-1}}, 0 at the top
    moved[0] = 0.0
    np.multiply(theta[1:], head[:-1], out=moved[1:])
    moved_tail = moved[::-1].cumsum()[::-1] - moved  # Σ_{k' > j}
    slots = layout.explores if layout.n_fixed else slice(None)  # a view when all explore
    cumulative = p.cumsum()
    head_sum = head.sum()
    displaced = float(np.add.reduce((tail - moved_tail)[slots]) / layout.n_explore)
    theta_mean = np.add.reduce(theta[slots]) / layout.n_explore
    allowed = budget.relative_cost * v_greedy
    if budget.floor == 0.0:  # the deepest pool, in floats: the last entry of the arrays below
        mean_beyond = float(cumulative[-1] - head_sum) / float(layout.beyond_sizes[-1])
        found = _deepest_pool(base, m_max, displaced - theta_mean * mean_beyond, allowed)
        if found is not None:
            return _calibration(*found, v_greedy, ranked)
    mean_beyond = (cumulative[k:] - head_sum) / layout.beyond_sizes
    cost = np.maximum(displaced - theta_mean * mean_beyond, 0.0)
    eps = _largest_ratio(allowed, cost)
    ok = eps > 0.0
    if budget.floor > 0.0:  # the unmoved last candidate keeps 1 − ε
        eps = np.where(eps < 1.0, np.minimum(eps, 1.0 - budget.floor), 1.0)
        ok = (eps > 0.0) & (eps / (layout.n_explore * layout.beyond_sizes) >= budget.floor)
    return _largest_allowed(base, eps, layout.pools, cost, ok, v_greedy, ranked)


def plackett_luce_cost_bound(
    p: np.ndarray, log_weights: np.ndarray, theta: np.ndarray, uniform_mix: float = 0.0
) -> float:
    """The exact upper bound Σ_k θ_k (p_(k) − L_k) on a Plackett-Luce policy's cost in plays,
    L_k = (1 − γ)·(w-weighted mean of p over ranks ≥ k) + γ·(mean of p over ranks ≥ k);
    ``p`` and ``log_weights`` are over the pool in greedy order, ``theta`` has K entries. The
    tail sums are log-sum-exps, so a cold temperature does not underflow."""
    k = theta.size
    m = p.size
    with np.errstate(divide="ignore"):  # a score of 0 has log 0 = −inf, which logaddexp takes
        log_wp = log_weights + np.log(p)
    log_tail_w = np.logaddexp.accumulate(log_weights[::-1])[::-1][:k]
    log_tail_wp = np.logaddexp.accumulate(log_wp[::-1])[::-1][:k]
    least = np.exp(log_tail_wp - log_tail_w)
    if uniform_mix > 0.0:
        tail_mean = np.cumsum(p[::-1])[::-1][:k] / (m - np.arange(k))
        least = (1.0 - uniform_mix) * least + uniform_mix * tail_mean
    return float(theta @ (p[:k] - least))


@lru_cache(maxsize=1)
def plackett_luce_kernels() -> Callable[..., tuple[int, float, float, float]]:
    """The compiled calibration (``explore.pl_bound.calibrate_pool``), imported on first use:
    loading numba takes a few hundred milliseconds that only Plackett-Luce calibration needs."""
    from explore.pl_bound import calibrate_pool

    return calibrate_pool


def calibrate_plackett_luce(
    base: PlackettLuceSlate, scores: np.ndarray, k: int, budget: ExplorationBudget
) -> Calibration:
    """The uniform mix the floor needs (γ = floor·M, at least ``base.uniform_mix``), the largest
    pool (≤ ``base.pool``, ≤ 1/floor) where that mix alone fits the budget, and then the largest
    temperature whose cost bound is within budget (``explore.pl_bound.calibrate_pool``)."""
    n = scores.size
    k = min(k, n)
    m_max = base._pool_size(n, k)
    if budget.floor > 0.0:
        m_max = min(m_max, int(np.floor(1.0 / budget.floor + 1e-9)))
        if m_max < k:
            return _greedy(cost_exact=False)
    ranked = top_order(scores, m_max)
    p_all = scores[ranked]
    theta = budget.weights(k)
    v_greedy = float(theta @ p_all[:k])
    calibrate_pool = plackett_luce_kernels()
    m, mix, log_t, spent = calibrate_pool(
        p_all, theta, m_max, budget.floor, base.uniform_mix, budget.relative_cost * v_greedy,
        *TEMPERATURE_RANGE,
    )  # fmt: skip
    if m == 0 or math.isnan(log_t):  # even the coldest temperature breaks the budget
        return _greedy(cost_exact=False, ranked=ranked)
    if log_t == math.inf:  # ``pl_bound.FLAT_POOL``: every pool candidate has the same score
        policy = replace(base, temperature=1.0, pool=m, uniform_mix=mix)
        return Calibration(policy=policy, relative_cost=0.0, cost_exact=True, ranked=ranked)
    policy = replace(base, temperature=math.exp(log_t), pool=m, uniform_mix=mix)
    return Calibration(
        policy=policy,
        relative_cost=max(spent, 0.0) / v_greedy if v_greedy > 0 else 0.0,
        cost_exact=False,
        ranked=ranked,
    )


def calibrate(base: Policy, scores: np.ndarray, k: int, budget: ExplorationBudget) -> Calibration:
    """Dispatch on the policy family; ``scores`` must be calibrated P(play)."""
    scores = validate_probabilities(scores)
    known = (EpsilonGreedySlate, TopKRandomInsertion, PlackettLuceSlate, GreedySlate)
    if isinstance(base, known) and budget.relative_cost == 0.0:
        return _greedy()
    if isinstance(base, EpsilonGreedySlate):
        return calibrate_epsilon_greedy(base, scores, k, budget)
    if isinstance(base, TopKRandomInsertion):
        return calibrate_random_insertion(base, scores, k, budget)
    if isinstance(base, PlackettLuceSlate):
        return calibrate_plackett_luce(base, scores, k, budget)
    if isinstance(base, GreedySlate):
        return _greedy()
    raise TypeError(
        "base must be an EpsilonGreedySlate, TopKRandomInsertion, PlackettLuceSlate or "
        f"GreedySlate; got {type(base).__name__}"
    )
