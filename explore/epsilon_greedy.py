"""Epsilon-greedy over whole slates, with exploration confined to chosen positions and
closed-form propensities.

Let g be the greedy slate (the top K by score), E the exploring positions (``positions``; all K
by default) and F the other, fixed positions, which always show their greedy candidate. The
exploration pool P is the top M candidates by score (M = ``pool``, at least K; all n when
``pool`` is None), so exploration draws on candidates beyond the top K. The free pool is
P' = P \\ {g_f : f ∈ F}, of size M' = M − |F|.

With probability 1 − ε the policy shows g; with probability ε it keeps g on F and fills the
positions of E, in order, with a uniformly random ordered |E|-subset of P'. Everything is exact:

    P(slate s)                   = (1 − ε)·[s = g] + ε·[s_F = g_F]·[s_E ⊆ P']·Π_{m<|E|} 1/(M' − m)
    P(prefix a_1..a_j)            = (1 − ε)·[a = g_{≤j}]
                                    + ε·[a_F = g_F]·[a_E ⊆ P']·Π_{m<|E ∩ [1, j]|} 1/(M' − m)
    π(a_j | a_1..a_{j-1})         = P(prefix of length j) / P(prefix of length j − 1)
    P(candidate i at position k)  = [g_k = i]                                   for k ∈ F
                                  = (1 − ε)·[g_k = i] + ε·[i ∈ P']/M'           for k ∈ E

(restrictions to the first j positions where a prefix is meant). With E = all positions this is
plain slate ε-greedy over the pool: P(slate) = (1 − ε)[s = g] + ε (M − K)!/M! on P.

A smaller pool concentrates exploration where a new model's slate is likely to land, which is
what gives off-policy estimates their overlap; items outside the pool are never explored. Keeping
the top positions fixed (``positions=(3, 4, ...)``) keeps the most examined slots greedy.

The per-position marginals make item-position IPS exact for this policy (Li et al., 2018,
"Offline evaluation of ranking policies with click models").
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
class EpsilonGreedySlate(PooledExploration):
    """ε-greedy over whole slates. ``epsilon`` in [0, 1]; 0 is greedy, 1 always explores.

    ``pool``: exploration draws from the top ``pool`` candidates (None: all). ``positions``:
    the 0-based positions that explore (None: all); the others always show the greedy item.
    """

    name: str = "epsilon_greedy"
    version: str = "1"

    def _free_ranks(self, explores: np.ndarray, k: int, m: int) -> np.ndarray:
        """Greedy ranks of the free pool P': the exploring positions' ranks, then ranks K..M−1."""
        if self.positions is None:
            return np.arange(m)
        return np.concatenate((np.flatnonzero(explores), np.arange(k, m)))

    def _pool(self, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """For a K-slate on these scores: the greedy order, which positions explore, the free
        pool P' as a mask over the candidates, and the pool size M."""
        m = self._pool_size(scores.size, k)
        order = greedy_order(scores)
        explores = exploring_mask(self.positions, k)
        free = np.zeros(scores.size, dtype=bool)
        free[order[self._free_ranks(explores, k, m)]] = True
        return order, explores, free, m

    def _prefix_probabilities(self, scores: np.ndarray, slate: np.ndarray) -> np.ndarray:
        """P(prefix of length j) for j = 1..K, for any valid slate."""
        k = slate.size
        order, explores, free, m = self._pool(scores, k)
        greedy = order[:k]
        uniform_step = (slate == greedy).astype(np.float64)
        uniform_step[explores] = free[slate[explores]] * _draw_probabilities(explores, m)
        matches_greedy = np.cumprod(slate == greedy).astype(bool)
        return (1.0 - self.epsilon) * matches_greedy + self.epsilon * np.cumprod(uniform_step)

    def decide_ranked(
        self,
        scores: np.ndarray,
        ranked: np.ndarray,
        k: int,
        rng: np.random.Generator,
        exploration: dict[str, Any] | None = None,
    ) -> Slate:
        m = self._pool_size(scores.size, k)
        order = ranked[:m]
        greedy = order[:k]
        layout = _layout(self.positions, k, m)
        explore = rng.random() < self.epsilon
        if explore:
            chosen = greedy.copy()
            pick = rng.permutation(layout.m_free)[: layout.n_explore]
            chosen[layout.explores] = order[layout.free_ranks[pick]]
            same = chosen == greedy
            matches_greedy = np.cumprod(same)
        else:
            chosen = greedy
            same = matches_greedy = layout.all_true
        # Fixed positions match greedy and explored ones hold free-pool candidates, so the
        # uniform branch's prefix probability does not depend on which candidates were drawn.
        prefix = (1.0 - self.epsilon) * matches_greedy + self.epsilon * layout.uniform_prefix
        marginal = np.where(
            layout.explores, (1.0 - self.epsilon) * same + self.epsilon / layout.m_free, 1.0
        )
        return Slate(
            indices=chosen,
            scores=scores[chosen],
            propensity=marginal,
            cond_propensity=conditionals(prefix),
            prefix_propensity=prefix,
            explored=explore & ~same,
            exploration=exploration,
        )

    def slate_probability(self, scores: np.ndarray, slate: np.ndarray) -> float:
        slate = np.asarray(slate, dtype=np.int64)
        scores = validate_scores(scores, max(slate.size, 1))
        if not is_slate(slate, scores.size):
            return 0.0
        return float(self._prefix_probabilities(scores, slate)[-1])

    def prefix_extensions(self, scores: np.ndarray, prefix: np.ndarray) -> np.ndarray:
        """(n,) ``slate_probability`` of the prefix followed by each candidate a, all at once
        (0 where a is in the prefix): what OPE needs for the policy's conditional choice after
        a logged prefix, without n calls."""
        prefix = np.asarray(prefix, dtype=np.int64)
        j = prefix.size
        scores = validate_scores(scores, j + 1)
        n = scores.size
        out = np.zeros(n)
        if j + 1 > n or (j and not is_slate(prefix, n)):
            return out
        k = j + 1
        order, explores, free, m = self._pool(scores, k)
        greedy = order[:k]
        draw = _draw_probabilities(explores, m)
        step = (prefix == greedy[:j]).astype(np.float64)
        before = explores[:j]
        step[before] = free[prefix[before]] * draw[: int(before.sum())]
        if explores[j]:
            out = free * (self.epsilon * float(np.prod(step)) * draw[-1])
        else:
            out[greedy[j]] = self.epsilon * float(np.prod(step))
        out[greedy[j]] += (1.0 - self.epsilon) * float(np.all(prefix == greedy[:j]))
        out[prefix] = 0.0
        return out

    def marginals(self, scores: np.ndarray, k: int) -> np.ndarray:
        scores = validate_scores(scores, k)
        n = scores.size
        k = min(k, n)
        m = self._pool_size(n, k)
        order = greedy_order(scores)
        explores = exploring_mask(self.positions, k)
        free = order[self._free_ranks(explores, k, m)]
        out = np.zeros((k, n))
        rows = np.flatnonzero(explores)
        out[np.ix_(rows, free)] = self.epsilon / free.size
        out[rows, order[rows]] += 1.0 - self.epsilon
        fixed = np.flatnonzero(~explores)
        out[fixed, order[fixed]] = 1.0
        return out


def _draw_probabilities(explores: np.ndarray, m: int) -> np.ndarray:
    """1/(M' − m) for the m-th exploring position: drawing without replacement from P'."""
    n_explore = int(explores.sum())
    m_free = m - (explores.size - n_explore)
    return 1.0 / (m_free - np.arange(n_explore, dtype=np.float64))


@dataclass(frozen=True)
class _Layout:
    """What ``decide`` needs that depends only on (positions, K, M), computed once."""

    explores: np.ndarray  # (K,) bool
    n_explore: int
    m_free: int
    free_ranks: np.ndarray  # greedy ranks of the free pool P'
    uniform_prefix: np.ndarray  # (K,) P(prefix | exploring branch) for any slate decide draws
    all_true: np.ndarray  # (K,) bool


@lru_cache(maxsize=256)
def _layout(positions: tuple[int, ...] | None, k: int, m: int) -> _Layout:
    explores = exploring_mask(positions, k)
    n_explore = int(explores.sum())
    if positions is None:
        free_ranks = np.arange(m)
    else:
        free_ranks = np.concatenate((np.flatnonzero(explores), np.arange(k, m)))
    step = np.ones(k)
    step[explores] = _draw_probabilities(explores, m)
    arrays = (explores, free_ranks, np.cumprod(step), np.ones(k, dtype=bool))
    for array in arrays:
        array.flags.writeable = False
    return _Layout(
        explores=arrays[0],
        n_explore=n_explore,
        m_free=m - (k - n_explore),
        free_ranks=arrays[1],
        uniform_prefix=arrays[2],
        all_true=arrays[3],
    )
