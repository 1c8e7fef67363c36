"""Top K with random insertion: the greedy slate, into which exploration inserts one candidate
from beyond the top K, with closed-form propensities.

Let g be the greedy slate (the top K by score), E the positions where an insertion may land
(``positions``; all K by default, c_k = |{e ∈ E : e ≤ k}|), and B the candidates ranked K..M−1
(M = ``pool``; all n when None), |B| = M − K. With probability ε the policy draws a position j
uniformly from E and a candidate x uniformly from B, and shows g_1..g_{j-1}, x, g_j..g_{K-1}:
the candidates from j on move down one position and g_K drops out. Otherwise it shows g. (When B
or E is empty nothing can be inserted and the policy is greedy.)

    P(candidate i at position k) = 1 − ε·c_k/|E|            for i = g_k       (not moved down)
                                 = ε·c_{k-1}/|E|            for i = g_{k-1}   (moved down)
                                 = ε·[k ∈ E]/(|E|·(M − K))  for i ∈ B         (inserted)
                                 = 0                        otherwise

Each row sums to 1 because c_k = c_{k-1} + [k ∈ E]. A slate is either g, with probability 1 − ε,
or determined by its first difference d from g: it needs d ∈ E, a_d ∈ B and the greedy
candidates moved down behind it. For the prefix a_1..a_j (positions 0..j−1):

    P(prefix) = 1 − ε·c_{j-1}/|E|           if a = g_{<j}   (no insertion, or one at or after j)
              = ε/(|E|·(M − K))             if the prefix is an insertion at d < j
              = 0                           otherwise

and π(a_j | a_1..a_{j-1}) is the ratio of consecutive prefixes. The smallest positive marginal
is ε/(|E|·(M − K)) (or 1 − ε, when that is smaller and ε < 1): the propensity floor.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from explore.policy import (
    conditionals,
    exploring_mask,
    greedy_order,
    is_slate,
    validate_scores,
)
from explore.pool import PooledExploration
from explore.slate import Slate


@dataclass(frozen=True, kw_only=True)
class TopKRandomInsertion(PooledExploration):
    """The top K, with one candidate from ranks K..pool−1 inserted at a random position of
    ``positions`` with probability ``epsilon`` (1: always)."""

    name: str = "random_insertion"
    version: str = "1"

    def _layout(self, n: int, k: int) -> tuple[int, np.ndarray, float]:
        """(M, c_k for k < K, the effective ε: 0 when nothing can be inserted)."""
        m = self._pool_size(n, k)
        reach = _reach(self.positions, k)
        insertable = m > k and reach[-1] > 0
        return m, reach, self.epsilon if insertable else 0.0

    def _prefix_probabilities(
        self, slate: np.ndarray, greedy: np.ndarray, beyond: np.ndarray, n: int
    ) -> np.ndarray:
        """P(prefix of length j) for j = 1..K; ``beyond`` is B (ranks K..M−1)."""
        k = slate.size
        m, reach, eps = self._layout(n, k)
        n_positions = reach[-1]
        unchanged = 1.0 - eps * reach / max(n_positions, 1)
        differs = slate != greedy
        if not differs.any():
            return unchanged
        d = int(np.argmax(differs))
        in_beyond = np.zeros(n, dtype=bool)
        in_beyond[beyond] = True
        valid = (
            eps > 0.0
            and exploring_mask(self.positions, k)[d]
            and in_beyond[slate[d]]
            and np.array_equal(slate[d + 1 :], greedy[d : k - 1])
        )
        inserted = eps / (n_positions * (m - k)) if eps > 0.0 else 0.0
        prefix = unchanged.copy()
        # Prefixes past d: valid while the moved-down greedy candidates keep matching.
        tail_ok = np.cumprod(np.concatenate(([valid], slate[d + 1 :] == greedy[d : k - 1])))
        prefix[d:] = inserted * tail_ok
        return prefix

    def decide_ranked(
        self,
        scores: np.ndarray,
        ranked: np.ndarray,
        k: int,
        rng: np.random.Generator,
        exploration: dict[str, Any] | None = None,
    ) -> Slate:
        m, reach, eps = self._layout(scores.size, k)
        order = ranked[:m]
        greedy = order[:k]
        n_positions = int(reach[-1])
        unchanged = 1.0 - eps * reach / max(n_positions, 1)
        insert = rng.random() < eps
        if not insert:
            return Slate(
                indices=greedy,
                scores=scores[greedy],
                propensity=unchanged,
                cond_propensity=conditionals(unchanged),
                prefix_propensity=unchanged,
                explored=np.zeros(k, dtype=bool),
                exploration=exploration,
            )
        j = int(_slots(self.positions, k)[rng.integers(n_positions)])
        x = order[k + rng.integers(m - k)]
        chosen = np.concatenate((greedy[:j], [x], greedy[j : k - 1]))
        inserted = eps / (n_positions * (m - k))
        propensity = unchanged.copy()
        propensity[j] = inserted
        propensity[j + 1 :] = eps * reach[j : k - 1] / n_positions
        prefix = unchanged.copy()
        prefix[j:] = inserted
        return Slate(
            indices=chosen,
            scores=scores[chosen],
            propensity=propensity,
            cond_propensity=conditionals(prefix),
            prefix_propensity=prefix,
            explored=np.arange(k) >= j,
            exploration=exploration,
        )

    def slate_probability(self, scores: np.ndarray, slate: np.ndarray) -> float:
        slate = np.asarray(slate, dtype=np.int64)
        scores = validate_scores(scores, max(slate.size, 1))
        n, k = scores.size, slate.size
        if not is_slate(slate, n):
            return 0.0
        m, _, _ = self._layout(n, k)
        order = greedy_order(scores)
        return float(self._prefix_probabilities(slate, order[:k], order[k:m], n)[-1])

    def marginals(self, scores: np.ndarray, k: int) -> np.ndarray:
        scores = validate_scores(scores, k)
        n = scores.size
        k = min(k, n)
        m, reach, eps = self._layout(n, k)
        order = greedy_order(scores)
        n_positions = max(int(reach[-1]), 1)
        rows = np.arange(k)
        out = np.zeros((k, n))
        out[rows, order[:k]] = 1.0 - eps * reach / n_positions
        out[rows[1:], order[: k - 1]] = eps * reach[:-1] / n_positions
        if eps > 0.0:
            explores = np.flatnonzero(exploring_mask(self.positions, k))
            out[np.ix_(explores, order[k:m])] = eps / (n_positions * (m - k))
        return out


@lru_cache(maxsize=256)
def _reach(positions: tuple[int, ...] | None, k: int) -> np.ndarray:
    """c_k for k < K (read-only): how many insertion positions are at or above each position."""
    out = np.cumsum(exploring_mask(positions, k))
    out.flags.writeable = False
    return out


@lru_cache(maxsize=256)
def _slots(positions: tuple[int, ...] | None, k: int) -> np.ndarray:
    """The insertion positions E among the first K (read-only)."""
    out = np.flatnonzero(exploring_mask(positions, k))
    out.flags.writeable = False
    return out
