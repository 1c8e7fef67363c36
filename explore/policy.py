"""The Policy interface: parameters in the constructor, data in the methods.

A policy maps a vector of candidate scores to a slate. It never sees item ids or requests: the
scorer hands it arrays, and the caller maps the chosen indices back to items.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

from explore.slate import Slate


@runtime_checkable
class Policy(Protocol):
    """What every exploration policy offers.

    - ``decide`` samples a slate and returns it with all its propensities.
    - ``slate_probability`` is the probability of any ordered slate, so that OPE can replay the
      policy on logged candidates.
    - ``marginals`` gives P(candidate i at position k) as a (k, n) array where it is exact.
    """

    name: str
    version: str

    def params(self) -> dict[str, Any]:
        """The exploration parameters, as they are logged with every decision."""
        ...

    def decide(self, scores: np.ndarray, k: int, rng: np.random.Generator) -> Slate: ...

    def slate_probability(self, scores: np.ndarray, slate: np.ndarray) -> float: ...

    def marginals(self, scores: np.ndarray, k: int) -> np.ndarray: ...


def validate_scores(scores: np.ndarray, k: int) -> np.ndarray:
    """Scores as a finite 1-D float array with at least one entry; k must be >= 1."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 1 or scores.size == 0:
        raise ValueError(f"scores must be a non-empty 1-D array; got shape {scores.shape}")
    bad = np.flatnonzero(~np.isfinite(scores))
    if bad.size:
        raise ValueError(f"scores must be finite; got {scores[bad[0]]} at index {bad[0]}")
    if k < 1:
        raise ValueError(f"k must be >= 1; got {k}")
    return scores


def greedy_order(scores: np.ndarray) -> np.ndarray:
    """Candidate indices by descending score, ties broken by index (deterministic)."""
    return np.lexsort((np.arange(scores.size), -scores))
