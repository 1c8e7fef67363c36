"""Plackett-Luce (softmax without replacement) over slates, with a temperature, a pool and a
propensity floor.

The pool P is the top M candidates by score (M = ``pool``, at least K; all n when None). Pool
candidate i has the softmax weight w_i = softmax_P(s / T)_i at temperature T > 0; candidates
outside P are never shown. The slate is drawn position by position among the pool candidates R_j
not yet shown: with probability γ = ``uniform_mix`` uniformly, otherwise in proportion to w.
γ = 0 is plain Plackett-Luce. Everything but the marginals is exact:

    π(a_j | a_1..a_{j-1})  = (1 − γ)·w_{a_j} / Σ_{i∈R_j} w_i + γ / |R_j|,   |R_j| = M − j + 1
    P(prefix a_1..a_j)     = Π_{m≤j} π(a_m | a_1..a_{m-1}),   P(slate) = P(prefix a_1..a_K)

Every conditional propensity of a pool candidate is at least γ/M: the propensity floor the
uniform mix buys. Sampling uses exponential races (Yellott, 1977): with E_i ~ Exp(1), the pool
ordered by E_i / w_i is a Plackett-Luce draw, and because the races are memoryless, "the first
candidate of that order not shown yet" is a softmax draw among the candidates left, whichever
were taken by the uniform steps. So one vectorized draw serves every softmax step.

Weights are kept as logarithms (log w_i = (s_i − max s)/T) and every mass left is a log-sum-exp,
so that a cold temperature never underflows into "all the rest are equal".

P(candidate i at position k) has no closed form for K > 1 (it sums over every prefix), so
``decide`` logs NaN marginals with ``marginals_exact=False`` (DESIGN §3), except for K = 1 where
the marginal is the first conditional itself. ``marginals`` is exact by a dynamic program over
subsets of the pool, so it is offered only for K = 1 or pools of at most
``EXACT_MARGINALS_MAX_POOL`` candidates, and raises otherwise: no estimate is ever returned as if
it were exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from explore.policy import (
    DecidesFromRanking,
    conditionals,
    greedy_order,
    is_slate,
    slate_positions,
    top_order,
    validate_scores,
)
from explore.pool import pool_size
from explore.slate import Slate

EXACT_MARGINALS_MAX_POOL = 14


def pool_log_weights(pool_scores: np.ndarray, temperature: float) -> np.ndarray:
    """log w up to a constant: (s − max s)/T over the pool. Nonincreasing along the pool when
    the pool is in greedy order."""
    return (pool_scores - pool_scores.max()) / temperature


def log_sum_exp(x: np.ndarray) -> float:
    """log Σ exp(x), −inf for an empty x."""
    if x.size == 0:
        return -np.inf
    top = float(x.max())
    return top + float(np.log(np.exp(x - top).sum()))


def _log_sum_exp_nonincreasing(x: np.ndarray) -> float:
    """``log_sum_exp`` of a nonincreasing x, whose largest entry is its first."""
    if x.size == 0:
        return -np.inf
    top = float(x[0])
    return top + float(np.log(np.add.reduce(np.exp(x - top))))


@lru_cache(maxsize=256)
def _uniform_conditionals(m: int, k: int, uniform_mix: float) -> np.ndarray:
    """γ/|R_j| for j = 1..k, |R_j| = m − j + 1: the uniform share of each conditional."""
    out = uniform_mix / (m - np.arange(k, dtype=np.float64))
    out.flags.writeable = False
    return out


def _mix_draws(
    race_order: list[int], uniform_steps: list[bool], m: int, rng: np.random.Generator
) -> np.ndarray:
    """Pool positions of a slate drawn step by step: a uniform step draws among the candidates
    left (by rejection), a softmax step takes the first candidate of the race not shown yet."""
    next_in_race = uniform_steps.index(True)  # up to the first uniform step: the race itself
    picked = race_order[:next_in_race]
    taken = set(picked)
    for uniform in uniform_steps[next_in_race:]:
        if uniform:
            pick = int(rng.integers(m))
            while pick in taken:
                pick = int(rng.integers(m))
        else:
            pick = race_order[next_in_race]
            while pick in taken:
                next_in_race += 1
                pick = race_order[next_in_race]
        taken.add(pick)
        picked.append(pick)
    return np.array(picked, dtype=np.int64)


@dataclass(frozen=True, kw_only=True)
class PlackettLuceSlate(DecidesFromRanking):
    """Softmax sampling without replacement. ``temperature`` > 0 (small: near greedy; large:
    near uniform over the pool); ``uniform_mix`` in [0, 1] floors every conditional propensity
    at ``uniform_mix / pool``."""

    temperature: float = 0.05
    pool: int | None = None
    uniform_mix: float = 0.0
    name: str = "plackett_luce"
    version: str = "1"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.temperature) and self.temperature > 0.0):
            raise ValueError(f"temperature must be finite and > 0; got {self.temperature}")
        if self.pool is not None and self.pool < 1:
            raise ValueError(f"pool must be None or >= 1; got {self.pool}")
        if not 0.0 <= self.uniform_mix <= 1.0:
            raise ValueError(f"uniform_mix must be in [0, 1]; got {self.uniform_mix}")

    def params(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "pool": self.pool, "uniform_mix": self.uniform_mix}

    def _pool_size(self, n: int, k: int) -> int:
        return pool_size(self.pool, n, k)

    def _weights(self, scores: np.ndarray, k: int, *, full_order: bool) -> tuple[np.ndarray, ...]:
        """(pool candidates in greedy order, their log weights)."""
        m = self._pool_size(scores.size, k)
        pool = greedy_order(scores)[:m] if full_order else top_order(scores, m)
        return pool, self._pool_log_weights(scores[pool])

    def _pool_log_weights(self, pool_scores: np.ndarray) -> np.ndarray:
        """``pool_log_weights`` for a pool in greedy order, whose first score is the largest."""
        return (pool_scores - pool_scores[0]) / self.temperature

    def _prefix(self, log_weights: np.ndarray, picked: np.ndarray) -> np.ndarray:
        """P(prefix) for pool positions ``picked`` (distinct) of a pool in greedy order: the
        softmax mass left before each draw is the log-sum-exp of the candidates not picked and the
        picks from there on."""
        left_out = np.empty(log_weights.size, dtype=bool)
        left_out.fill(True)
        left_out[picked] = False
        log_picked = log_weights[picked]
        suffix = np.logaddexp.accumulate(log_picked[::-1])[::-1]
        log_left = np.logaddexp(suffix, _log_sum_exp_nonincreasing(log_weights[left_out]))
        cond = np.exp(log_picked - log_left)
        if self.uniform_mix > 0.0:
            cond *= 1.0 - self.uniform_mix
            cond += _uniform_conditionals(log_weights.size, picked.size, self.uniform_mix)
        return cond.cumprod()

    def _draw(self, log_weights: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
        """Pool positions of a slate of k."""
        m = log_weights.size
        race = np.log(rng.standard_exponential(m)) - log_weights  # log(E_i / w_i)
        uniform_steps = (rng.random(k) < self.uniform_mix).tolist() if self.uniform_mix else []
        # The first k of the race always suffice: each step shows or skips at most one of them.
        if k < m:
            first = race.argpartition(k - 1)[:k]
            order = first[race[first].argsort(kind="stable")]
        else:
            order = race.argsort(kind="stable")
        if True not in uniform_steps:
            return order[:k]
        return _mix_draws(order.tolist(), uniform_steps, m, rng)

    def decide_ranked(
        self,
        scores: np.ndarray,
        ranked: np.ndarray,
        k: int,
        rng: np.random.Generator,
        exploration: dict[str, Any] | None = None,
    ) -> Slate:
        pool = ranked[: self._pool_size(scores.size, k)]
        log_weights = self._pool_log_weights(scores[pool])
        picked = self._draw(log_weights, k, rng)
        prefix = self._prefix(log_weights, picked)
        cond = conditionals(prefix)
        exact = k == 1
        if exact:
            propensity = cond.copy()
        else:
            propensity = np.empty(k)
            propensity.fill(np.nan)
        chosen = pool[picked]
        return Slate(
            indices=chosen,
            scores=scores[chosen],
            propensity=propensity,
            cond_propensity=cond,
            prefix_propensity=prefix,
            explored=picked != slate_positions(k),
            marginals_exact=exact,
            exploration=exploration,
        )

    def slate_probability(self, scores: np.ndarray, slate: np.ndarray) -> float:
        slate = np.asarray(slate, dtype=np.int64)
        scores = validate_scores(scores, max(slate.size, 1))
        if not is_slate(slate, scores.size):
            return 0.0
        pool, log_weights = self._weights(scores, slate.size, full_order=True)
        rank = np.full(scores.size, -1)
        rank[pool] = np.arange(pool.size)
        picked = rank[slate]
        if np.any(picked < 0):
            return 0.0
        return float(self._prefix(log_weights, picked)[-1])

    def marginals(self, scores: np.ndarray, k: int) -> np.ndarray:
        """Exact P(candidate i at position k), (k, n), for K = 1 or a pool of at most
        ``EXACT_MARGINALS_MAX_POOL`` candidates."""
        scores = validate_scores(scores, k)
        n = scores.size
        k = min(k, n)
        pool, log_weights = self._weights(scores, k, full_order=True)
        out = np.zeros((k, n))
        if k == 1:
            weights = np.exp(log_weights - log_sum_exp(log_weights))
            out[0, pool] = (1.0 - self.uniform_mix) * weights + self.uniform_mix / pool.size
            return out
        if pool.size > EXACT_MARGINALS_MAX_POOL:
            raise ValueError(
                f"Plackett-Luce marginals are exact only for k = 1 or a pool of at most "
                f"{EXACT_MARGINALS_MAX_POOL} candidates; got k = {k} and a pool of {pool.size} "
                "(use slate_probability or the prefix propensities instead)"
            )
        out[:, pool] = subset_marginals(log_weights, k, self.uniform_mix)
        return out


def subset_marginals(log_weights: np.ndarray, k: int, uniform_mix: float = 0.0) -> np.ndarray:
    r"""Exact marginals (k, m) by dynamic programming over subsets of the m pool candidates.

    With q(i | S) = (1 − γ)·w_i / w(complement of S) + γ/(m − |S|), the probability that the
    next draw after the set S is i:
    f(S) = P(the first |S| positions hold exactly the set S) = Σ_{i∈S} f(S \ i)·q(i | S \ i),
    f(∅) = 1, and P(i at position j) = Σ_{|S| = j, i ∉ S} f(S)·q(i | S). O(2^m · m), with the
    masses left as log-sum-exps.
    """
    m = log_weights.size
    masks = np.arange(1 << m)
    bits = ((masks[:, None] >> np.arange(m)) & 1).astype(bool)  # (2^m, m)
    size = bits.sum(axis=1)
    free_log = np.where(bits, -np.inf, log_weights[None, :])  # (2^m, m)
    top = free_log.max(axis=1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    uniform = np.where(size < m, uniform_mix / np.maximum(m - size, 1), 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):  # the full set has nothing left
        log_left = top[:, 0] + np.log(np.exp(free_log - top).sum(axis=1))  # (2^m,)
        # q[S, i] = P(next draw is i | the set S is shown), 0 for i in S.
        softmax = np.exp(free_log - log_left[:, None])
    q = (1.0 - uniform_mix) * softmax + np.where(bits, 0.0, uniform[:, None])
    q[size == m] = 0.0
    f = np.zeros(1 << m)
    f[0] = 1.0
    for j in range(1, k):
        sets = masks[size == j]
        for i in range(m):
            has = bits[sets, i]
            without = sets[has] ^ (1 << i)
            f[sets[has]] += f[without] * q[without, i]
    out = np.zeros((k, m))
    for j in range(k):
        sets = masks[size == j]
        out[j] = f[sets] @ q[sets]
    return out
