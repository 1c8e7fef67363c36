"""Epsilon-greedy over whole slates, with closed-form propensities.

With probability 1 − ε the policy shows the greedy slate g (the top K by score); with probability
ε it shows a uniformly random ordered K-subset of the exploration pool P: the top M candidates by
score (M = ``pool``, at least K; all n candidates when ``pool`` is None). Everything is exact:

    P(slate s)                   = (1 − ε)·[s = g] + ε·[s ⊆ P]·(M − K)!/M!
    P(prefix a_1..a_j)            = (1 − ε)·[a_1..a_j = g_1..g_j] + ε·[a ⊆ P]·Π_{m<j} 1/(M − m)
    π(a_j | a_1..a_{j-1})         = P(prefix of length j) / P(prefix of length j − 1)
    P(candidate i at position k)  = (1 − ε)·[g_k = i] + ε·[i ∈ P]/M

A smaller pool concentrates exploration where a new model's slate is likely to land, which is
what gives off-policy estimates their overlap; items outside the pool are never explored.

The per-position marginals make item-position IPS exact for this policy (Li et al., 2018,
"Offline evaluation of ranking policies with click models").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from explore.policy import greedy_order, validate_scores
from explore.slate import Slate


@dataclass(frozen=True, kw_only=True)
class EpsilonGreedySlate:
    """ε-greedy over whole slates. ``epsilon`` in [0, 1]; 0 is greedy, 1 is uniform."""

    epsilon: float = 0.1
    pool: int | None = None
    name: str = "epsilon_greedy"
    version: str = "1"

    def __post_init__(self) -> None:
        if not 0.0 <= self.epsilon <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1]; got {self.epsilon}")
        if self.pool is not None and self.pool < 1:
            raise ValueError(f"pool must be None or >= 1; got {self.pool}")

    def params(self) -> dict[str, Any]:
        return {"epsilon": self.epsilon, "pool": self.pool}

    def _pool_size(self, n: int, k: int) -> int:
        return n if self.pool is None else min(n, max(self.pool, k))

    def _prefix_probabilities(self, greedy: np.ndarray, slate: np.ndarray, n: int) -> np.ndarray:
        """P(prefix of length j) for j = 1..K."""
        k = slate.size
        m = self._pool_size(n, k)
        in_pool = np.zeros(n, dtype=bool)
        in_pool[greedy[:m]] = True
        uniform = np.cumprod(in_pool[slate] / (m - np.arange(k, dtype=np.float64)))
        matches_greedy = np.cumprod(slate == greedy[:k]).astype(bool)
        return (1.0 - self.epsilon) * matches_greedy + self.epsilon * uniform

    def decide(self, scores: np.ndarray, k: int, rng: np.random.Generator) -> Slate:
        scores = validate_scores(scores, k)
        n = scores.size
        k = min(k, n)
        greedy = greedy_order(scores)
        m = self._pool_size(n, k)
        explore = rng.random() < self.epsilon
        chosen = greedy[:m][rng.permutation(m)[:k]] if explore else greedy[:k]
        prefix = self._prefix_probabilities(greedy, chosen, n)
        cond = prefix / np.concatenate(([1.0], prefix[:-1]))
        # Every chosen candidate is in the pool: the greedy ones are its top K.
        marginal = (1.0 - self.epsilon) * (chosen == greedy[:k]) + self.epsilon / m
        return Slate(
            indices=chosen,
            scores=scores[chosen],
            propensity=marginal,
            cond_propensity=cond,
            prefix_propensity=prefix,
            explored=explore & (chosen != greedy[:k]),
        )

    def slate_probability(self, scores: np.ndarray, slate: np.ndarray) -> float:
        slate = np.asarray(slate, dtype=np.int64)
        scores = validate_scores(scores, max(slate.size, 1))
        n = scores.size
        if slate.size == 0 or slate.size > n or np.unique(slate).size != slate.size:
            return 0.0
        if slate.min() < 0 or slate.max() >= n:
            return 0.0
        return float(self._prefix_probabilities(greedy_order(scores), slate, n)[-1])

    def marginals(self, scores: np.ndarray, k: int) -> np.ndarray:
        scores = validate_scores(scores, k)
        n = scores.size
        k = min(k, n)
        m = self._pool_size(n, k)
        greedy = greedy_order(scores)
        out = np.zeros((k, n))
        out[:, greedy[:m]] = self.epsilon / m
        out[np.arange(k), greedy[:k]] += 1.0 - self.epsilon
        return out
