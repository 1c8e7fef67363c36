"""The Policy interface: parameters in the constructor, data in the methods.

A policy maps a vector of candidate scores to a slate. It never sees item ids or requests: the
scorer hands it arrays, and the caller maps the chosen indices back to items.
"""

from __future__ import annotations

import math
from functools import lru_cache
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


class DecidesFromRanking:
    """``decide`` for the policies that draw from the top of the greedy order: validate the
    scores once, rank the top ``_pool_size(n, k)`` candidates once, and hand both to the
    policy's ``decide_ranked`` (which calibrated policies call with their own ranking)."""

    def _pool_size(self, n: int, k: int) -> int:
        return k  # no exploration pool: the top K

    def decide_ranked(
        self,
        scores: np.ndarray,
        ranked: np.ndarray,
        k: int,
        rng: np.random.Generator,
        exploration: dict[str, Any] | None = None,
    ) -> Slate:
        """``decide`` on validated scores whose greedy order is known: ``ranked`` is
        ``top_order(scores, m)`` for any m at least ``_pool_size(n, k)``; 1 <= k <= n. The
        slate logs ``exploration`` (see ``Slate.exploration``). Each policy implements it."""
        raise NotImplementedError

    def decide(self, scores: np.ndarray, k: int, rng: np.random.Generator) -> Slate:
        scores = validate_scores(scores, k)
        k = min(k, scores.size)
        ranked = top_order(scores, self._pool_size(scores.size, k))
        return self.decide_ranked(scores, ranked, k, rng)


def validate_scores(scores: np.ndarray, k: int) -> np.ndarray:
    """Scores as a finite 1-D float array with at least one entry; k must be >= 1."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 1 or scores.size == 0:
        raise ValueError(f"scores must be a non-empty 1-D array; got shape {scores.shape}")
    # Σ s² is finite when every score is (a NaN or ±inf makes it NaN or inf); only when it is
    # not, which a huge finite score can also cause, are the scores checked one by one.
    if not math.isfinite(scores.dot(scores)) and not np.isfinite(scores).all():
        bad = np.flatnonzero(~np.isfinite(scores))
        raise ValueError(f"scores must be finite; got {scores[bad[0]]} at index {bad[0]}")
    if k < 1:
        raise ValueError(f"k must be >= 1; got {k}")
    return scores


def greedy_order(scores: np.ndarray) -> np.ndarray:
    """Candidate indices by descending score, ties broken by index (deterministic)."""
    return np.lexsort((np.arange(scores.size), -scores))


def top_order(scores: np.ndarray, m: int) -> np.ndarray:
    """``greedy_order(scores)[:m]`` without sorting all n candidates.

    A threshold that most likely lets through somewhat more than the top m is read off an evenly
    strided sample of the scores. When at least m candidates reach it, they hold the whole top m
    (each of those scores is at least the m-th largest, which is at least the threshold), so
    sorting them alone by descending score, ties by index, and keeping m gives the answer.
    Otherwise the exact m-th largest score is found by partitioning all n. The answer is exact
    either way: the sample only saves time.
    """
    n = scores.size
    m = min(m, n)
    if 4 * m >= n:
        return greedy_order(scores)[:m]
    top = _sampled_candidates(scores, m)
    if top is None:
        top = _top_indices(scores, m)
    return top[np.lexsort((top, -scores[top]))[:m]]


def _sampled_candidates(scores: np.ndarray, m: int) -> np.ndarray | None:
    """Ascending indices of the candidates at or above a threshold read off a strided sample,
    when at least m and at most half of them reach it (None otherwise)."""
    n = scores.size
    stride = max(1, n // (2 * m))
    sample = scores[::stride]
    # The sample's j-th largest leaves about j·stride candidates above it, give or take
    # sqrt(j)·stride: j - 2.5·sqrt(j) = m / stride makes too few only rare.
    root = 0.5 * (2.5 + math.sqrt(6.25 + 4.0 * m / stride))
    j = min(sample.size, math.ceil(root * root))
    threshold = np.partition(sample, sample.size - j)[sample.size - j]
    top = (scores >= threshold).nonzero()[0]
    return top if m <= top.size <= n // 2 else None


def _top_indices(scores: np.ndarray, m: int) -> np.ndarray:
    """Ascending indices of the top m (1 <= m <= n): those above the m-th largest score and the
    lowest-index ones tied with it."""
    n = scores.size
    threshold = np.partition(scores, n - m)[n - m]
    top = np.flatnonzero(scores >= threshold)
    if top.size > m:  # ties at the threshold: keep the lowest-index tied candidates
        above = np.flatnonzero(scores > threshold)
        tied = np.flatnonzero(scores == threshold)[: m - above.size]
        top = np.sort(np.concatenate((above, tied)))
    return top


def is_slate(slate: np.ndarray, n: int) -> bool:
    """Whether ``slate`` is a non-empty ordered slate of distinct indices into n candidates."""
    if slate.ndim != 1 or slate.size == 0 or slate.size > n:
        return False
    if slate.min() < 0 or slate.max() >= n:
        return False
    return np.unique(slate).size == slate.size


def conditionals(prefix: np.ndarray) -> np.ndarray:
    """π(a_k | a_1..a_{k-1}) from the prefix probabilities P(a_1..a_k): P(a_1), then the ratio
    of each prefix to the one before."""
    out = np.empty(prefix.size)
    out[:1] = prefix[:1]
    np.divide(prefix[1:], prefix[:-1], out=out[1:])
    return out


@lru_cache(maxsize=256)
def slate_positions(k: int) -> np.ndarray:
    """0..k−1, read-only: the greedy pool position of each slate position."""
    out = np.arange(k)
    out.flags.writeable = False
    return out


def validate_positions(positions: tuple[int, ...] | None) -> None:
    """Exploring positions: None (all) or a non-empty tuple of distinct 0-based positions."""
    if positions is None:
        return
    if len(positions) == 0:
        raise ValueError("positions must be None (all) or a non-empty tuple; got ()")
    bad = [p for p in positions if not isinstance(p, int | np.integer) or p < 0]
    if bad:
        raise ValueError(f"positions must be 0-based ints >= 0; got {bad[0]!r} in {positions}")
    if len(set(positions)) != len(positions):
        raise ValueError(f"positions must be distinct; got {positions}")


@lru_cache(maxsize=256)
def exploring_mask(positions: tuple[int, ...] | None, k: int) -> np.ndarray:
    """(k,) bool, read-only: which of the first k positions explore."""
    if positions is None:
        mask = np.ones(k, dtype=bool)
    else:
        mask = np.zeros(k, dtype=bool)
        mask[[p for p in positions if p < k]] = True
    mask.flags.writeable = False
    return mask
