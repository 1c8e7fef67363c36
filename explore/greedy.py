"""The greedy slate: the top K by score, shown with probability 1 (no exploration).

    P(slate s)                   = [s = g],  g = the top K by score (ties by lower index)
    P(candidate i at position k) = [g_k = i]

It is the baseline every exploration budget is measured against, and what a calibrated policy
falls back to when no exploration fits within the budget and the propensity floor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from explore.policy import (
    DecidesFromRanking,
    greedy_order,
    is_slate,
    top_order,
    validate_scores,
)
from explore.slate import Slate


@dataclass(frozen=True, kw_only=True)
class GreedySlate(DecidesFromRanking):
    """Deterministic top K. Every propensity is 1 and nothing is explored."""

    name: str = "greedy"
    version: str = "1"

    def params(self) -> dict[str, Any]:
        return {}

    def decide_ranked(
        self,
        scores: np.ndarray,
        ranked: np.ndarray,
        k: int,
        rng: np.random.Generator,
        exploration: dict[str, Any] | None = None,
    ) -> Slate:
        chosen = ranked[:k]
        ones = np.ones(chosen.size)
        return Slate(
            indices=chosen,
            scores=scores[chosen],
            propensity=ones,
            cond_propensity=ones.copy(),
            prefix_propensity=ones.copy(),
            explored=np.zeros(chosen.size, dtype=bool),
            exploration=exploration,
        )

    def slate_probability(self, scores: np.ndarray, slate: np.ndarray) -> float:
        slate = np.asarray(slate, dtype=np.int64)
        scores = validate_scores(scores, max(slate.size, 1))
        if not is_slate(slate, scores.size):
            return 0.0
        return float(np.array_equal(slate, top_order(scores, slate.size)))

    def marginals(self, scores: np.ndarray, k: int) -> np.ndarray:
        scores = validate_scores(scores, k)
        k = min(k, scores.size)
        out = np.zeros((k, scores.size))
        out[np.arange(k), greedy_order(scores)[:k]] = 1.0
        return out
