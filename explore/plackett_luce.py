"""Plackett-Luce (softmax without replacement) over slates, with a temperature, a pool and a
propensity floor.

The pool P is the top M candidates by score (M = ``pool``, at least K; all n when None). Each
pool candidate i gets the weight

    w_i = (1 − γ)·softmax_P(s / T)_i + γ/M,      Σ_{i∈P} w_i = 1,

with temperature T > 0 and uniform mix γ = ``uniform_mix`` in [0, 1]; candidates outside P get 0.
The slate is drawn position by position without replacement, each time with probability
proportional to w among the candidates not yet shown. Everything but the marginals is exact:

    π(a_j | a_1..a_{j-1})  = w_{a_j} / Σ_{i ∈ P \\ {a_1..a_{j-1}}} w_i
    P(prefix a_1..a_j)     = Π_{m≤j} π(a_m | a_1..a_{m-1}),   P(slate) = P(prefix a_1..a_K)

Every conditional propensity of a pool candidate is at least min_i w_i ≥ γ/M: that is the
propensity floor the uniform mix buys. Sampling uses exponential races (Yellott, 1977): with
E_i ~ Exp(1), the candidates ordered by E_i / w_i are a Plackett-Luce draw, so one vectorized
draw gives the whole slate.

P(candidate i at position k) has no closed form for K > 1 (it sums over every prefix), so
``decide`` logs NaN marginals with ``marginals_exact=False`` (DESIGN §3), except for K = 1 where
the marginal is w itself. ``marginals`` is exact by a dynamic program over subsets of the pool,
so it is offered only for K = 1 or pools of at most ``EXACT_MARGINALS_MAX_POOL`` candidates, and
raises otherwise: no estimate is ever returned as if it were exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from explore.policy import conditionals, greedy_order, is_slate, top_order, validate_scores
from explore.slate import Slate

EXACT_MARGINALS_MAX_POOL = 14


def pool_weights(pool_scores: np.ndarray, temperature: float, uniform_mix: float) -> np.ndarray:
    """w over the pool (scores in greedy order): the softmax at ``temperature`` mixed with
    uniform. Sums to 1."""
    z = np.exp((pool_scores - pool_scores.max()) / temperature)
    return (1.0 - uniform_mix) * (z / z.sum()) + uniform_mix / pool_scores.size


@dataclass(frozen=True, kw_only=True)
class PlackettLuceSlate:
    """Softmax sampling without replacement. ``temperature`` > 0 (small: near greedy; large:
    near uniform over the pool); ``uniform_mix`` in [0, 1] floors every conditional propensity
    at ``uniform_mix / pool``."""

    temperature: float = 0.05
    pool: int | None = None
    uniform_mix: float = 0.0
    name: str = "plackett_luce"
    version: str = "1"

    def __post_init__(self) -> None:
        if not (np.isfinite(self.temperature) and self.temperature > 0.0):
            raise ValueError(f"temperature must be finite and > 0; got {self.temperature}")
        if self.pool is not None and self.pool < 1:
            raise ValueError(f"pool must be None or >= 1; got {self.pool}")
        if not 0.0 <= self.uniform_mix <= 1.0:
            raise ValueError(f"uniform_mix must be in [0, 1]; got {self.uniform_mix}")

    def params(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "pool": self.pool, "uniform_mix": self.uniform_mix}

    def _pool_size(self, n: int, k: int) -> int:
        return n if self.pool is None else min(n, max(self.pool, k))

    def _weights(self, scores: np.ndarray, k: int, *, full_order: bool) -> tuple[np.ndarray, ...]:
        """(pool candidates in greedy order, their weights)."""
        m = self._pool_size(scores.size, k)
        pool = greedy_order(scores)[:m] if full_order else top_order(scores, m)
        return pool, pool_weights(scores[pool], self.temperature, self.uniform_mix)

    @staticmethod
    def _prefix(weights: np.ndarray, picked: np.ndarray) -> np.ndarray:
        """P(prefix) for pool positions ``picked`` (distinct). The mass left before each draw is
        summed from what is left, not subtracted from 1, so that it stays accurate when tiny."""
        left_out = np.ones(weights.size, dtype=bool)
        left_out[picked] = False
        w_picked = weights[picked]
        remaining = weights[left_out].sum() + np.cumsum(w_picked[::-1])[::-1]
        return np.cumprod(w_picked / remaining)

    def decide(self, scores: np.ndarray, k: int, rng: np.random.Generator) -> Slate:
        scores = validate_scores(scores, k)
        k = min(k, scores.size)
        pool, weights = self._weights(scores, k, full_order=False)
        with np.errstate(divide="ignore"):
            race = rng.standard_exponential(weights.size) / weights
        if k < weights.size:
            first = np.argpartition(race, k - 1)[:k]
            picked = first[np.argsort(race[first], kind="stable")]
        else:
            picked = np.argsort(race, kind="stable")
        prefix = self._prefix(weights, picked)
        cond = conditionals(prefix)
        exact = k == 1
        chosen = pool[picked]
        return Slate(
            indices=chosen,
            scores=scores[chosen],
            propensity=cond.copy() if exact else np.full(k, np.nan),
            cond_propensity=cond,
            prefix_propensity=prefix,
            explored=picked != np.arange(k),
            marginals_exact=exact,
        )

    def slate_probability(self, scores: np.ndarray, slate: np.ndarray) -> float:
        slate = np.asarray(slate, dtype=np.int64)
        scores = validate_scores(scores, max(slate.size, 1))
        if not is_slate(slate, scores.size):
            return 0.0
        pool, weights = self._weights(scores, slate.size, full_order=True)
        rank = np.full(scores.size, -1)
        rank[pool] = np.arange(pool.size)
        picked = rank[slate]
        if np.any(picked < 0):
            return 0.0
        return float(self._prefix(weights, picked)[-1])

    def marginals(self, scores: np.ndarray, k: int) -> np.ndarray:
        """Exact P(candidate i at position k), (k, n), for K = 1 or a pool of at most
        ``EXACT_MARGINALS_MAX_POOL`` candidates."""
        scores = validate_scores(scores, k)
        n = scores.size
        k = min(k, n)
        pool, weights = self._weights(scores, k, full_order=True)
        out = np.zeros((k, n))
        if k == 1:
            out[0, pool] = weights
            return out
        if pool.size > EXACT_MARGINALS_MAX_POOL:
            raise ValueError(
                f"Plackett-Luce marginals are exact only for k = 1 or a pool of at most "
                f"{EXACT_MARGINALS_MAX_POOL} candidates; got k = {k} and a pool of {pool.size} "
                "(use slate_probability or the prefix propensities instead)"
            )
        out[:, pool] = subset_marginals(weights, k)
        return out


def subset_marginals(weights: np.ndarray, k: int) -> np.ndarray:
    """Exact Plackett-Luce marginals (k, m) by dynamic programming over subsets of m candidates.

    f(S) = P(the first |S| positions hold exactly the set S)
         = Σ_{i∈S} f(S \\ i)·w_i / w(complement of S \\ i),    f(∅) = 1;
    P(i at position j) = Σ_{|S| = j, i ∉ S} f(S)·w_i / w(complement of S).
    O(2^m · m) time and memory.
    """
    m = weights.size
    masks = np.arange(1 << m)
    bits = ((masks[:, None] >> np.arange(m)) & 1).astype(bool)  # (2^m, m)
    left = (~bits) @ weights  # w of the complement of each set, summed from what is left
    size = bits.sum(axis=1)
    f = np.zeros(1 << m)
    f[0] = 1.0
    for j in range(1, k):
        sets = masks[size == j]
        for i in range(m):
            has = bits[sets, i]
            without = sets[has] ^ (1 << i)
            f[sets[has]] += f[without] * weights[i] / left[without]
    out = np.zeros((k, m))
    for j in range(k):
        sets = masks[size == j]
        step = f[sets] / left[sets]  # (sets,)
        out[j] = weights * (step @ ~bits[sets])
    return out
