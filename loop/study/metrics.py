"""The loop study's measures, as pure functions of arrays: exposure inequality (Gini),
homogenization (mean pairwise Jaccard similarity of what members consumed), and the
t interval used for means and paired differences over seeds."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats


def gini(counts: np.ndarray) -> float:
    """The Gini coefficient of non-negative ``counts`` (one per item, zeros included): 0 when
    every item has the same exposure, (n − 1)/n when one item has all of it; 0 for no exposure.

    G = Σ_i (2i − n − 1) x_(i) / (n Σ x), with x sorted ascending and i = 1..n."""
    x = np.sort(np.asarray(counts, dtype=np.float64))
    if x.size and x[0] < 0:
        raise ValueError("counts must be >= 0")
    n, total = x.size, float(x.sum())
    if n == 0 or total <= 0.0:
        return 0.0
    i = np.arange(1, n + 1, dtype=np.float64)
    return float(np.sum((2.0 * i - n - 1.0) * x) / (n * total))


def mean_pairwise_jaccard(consumed: np.ndarray) -> float:
    """The mean Jaccard similarity |A ∩ B| / |A ∪ B| over pairs of members, each row of the
    boolean (members × items) ``consumed`` one member's set; members who consumed nothing are
    left out (their similarity is undefined). NaN with fewer than two such members."""
    rows = np.asarray(consumed, dtype=bool)
    rows = rows[rows.any(axis=1)].astype(np.float64)
    m = rows.shape[0]
    if m < 2:
        return math.nan
    inter = rows @ rows.T
    size = rows.sum(axis=1)
    union = size[:, None] + size[None, :] - inter
    upper = np.triu_indices(m, k=1)
    return float(np.mean(inter[upper] / union[upper]))


def mean_interval(values: np.ndarray, alpha: float = 0.05) -> tuple[float, float, float]:
    """(mean, lo, hi): the mean of ``values`` (NaN left out) with its Student-t interval; the
    interval is NaN with fewer than two values."""
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    if v.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(v.mean())
    if v.size < 2:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(1.0 - alpha / 2.0, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))
    return mean, mean - half, mean + half
