"""The Slate: what a policy chose, with the exact probabilities it used to choose it."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Slate:
    """A chosen slate over a candidate list. Arrays have one entry per position (0 = top).

    Attributes:
        indices: (K,) int, indices into the candidate list the scores came with.
        scores: (K,) the logging scores of the chosen candidates.
        propensity: (K,) P(this candidate at this position) under the policy (the marginal), or
            NaN where the policy has no exact marginal (``marginals_exact`` is then False).
        cond_propensity: (K,) π(a_k | a_1..a_{k-1}, x).
        prefix_propensity: (K,) Π_{j<=k} cond_propensity[j]; the last entry is the probability
            of the whole slate.
        explored: (K,) bool, True where exploration put a different candidate than the greedy
            one at that position.
        marginals_exact: whether ``propensity`` is exact.
        exploration: the exploration parameters actually used for this decision, when they were
            chosen per request (calibrated exploration); None when they are the policy's own
            ``params()``. This is what the decision record logs.
    """

    indices: np.ndarray
    scores: np.ndarray
    propensity: np.ndarray
    cond_propensity: np.ndarray
    prefix_propensity: np.ndarray
    explored: np.ndarray
    marginals_exact: bool = True
    exploration: dict[str, Any] | None = None

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    def with_exploration(self, exploration: dict[str, Any] | None) -> Slate:
        """This slate, logging ``exploration`` as the parameters it was decided with."""
        return replace(self, exploration=exploration)

    @property
    def probability(self) -> float:
        """Probability of the whole ordered slate."""
        return float(self.prefix_propensity[-1]) if len(self) else 1.0
