"""Policy replay: the target policy's probability of each logged (item, position).

Given a logged decision's candidates, the new model's scores on those candidates, and an
exploration policy, the target propensity of the logged item at position k is the policy's exact
marginal P(item at k). The policy is anything with ``marginals(scores, k) -> (k, n)`` (the
``explore`` Policy interface); ``ope`` needs only that method.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np


class HasMarginals(Protocol):
    def marginals(self, scores: np.ndarray, k: int) -> np.ndarray: ...


def target_marginals(
    policy: HasMarginals,
    scores: np.ndarray,
    slate_candidate_index: np.ndarray,
) -> np.ndarray:
    """(K,) P_target(logged candidate at its logged position), for one logged decision.

    Args:
        scores: (n,) the target model's scores on the logged candidates.
        slate_candidate_index: (K,) index into the candidates of the item logged at each position.
    """
    slate_candidate_index = np.asarray(slate_candidate_index, dtype=np.int64)
    k = slate_candidate_index.size
    marginals = policy.marginals(np.asarray(scores, dtype=np.float64), k)
    positions = np.arange(min(k, marginals.shape[0]))
    out = np.zeros(k)
    out[positions] = marginals[positions, slate_candidate_index[positions]]
    return out
