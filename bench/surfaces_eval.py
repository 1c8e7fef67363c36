"""Measures of a ranking against the simulated world's truth, for ``bench surfaces``.

Pure functions over arrays: NDCG@k with the true expected rewards as gains, whether the true
best title is in the top k, the calibration error of predicted P(play) against the true
probabilities (not sampled plays), and a t interval of paired differences over seeds.
"""

from __future__ import annotations

import math

import numpy as np


def ranking(scores: np.ndarray, items: np.ndarray) -> np.ndarray:
    """``items`` ordered by ``scores``, best first (ties by item id)."""
    return np.asarray(items)[np.lexsort((np.asarray(items), -np.asarray(scores)))]


def ndcg_at(scores: np.ndarray, gains: np.ndarray, k: int) -> float:
    """NDCG@k of ordering by ``scores`` with graded ``gains`` (the truth), 0 when every gain
    is 0."""
    scores = np.asarray(scores, dtype=np.float64)
    gains = np.asarray(gains, dtype=np.float64)
    if scores.shape != gains.shape:
        raise ValueError(f"scores and gains must have the same shape; got {scores.shape} "
                         f"and {gains.shape}")  # fmt: skip
    discount = 1.0 / np.log2(np.arange(min(k, gains.size)) + 2.0)
    order = np.lexsort((np.arange(scores.size), -scores))[: discount.size]
    ideal = np.sort(gains)[::-1][: discount.size]
    best = float(ideal @ discount)
    return float(gains[order] @ discount) / best if best > 0 else 0.0


def calibration_error(predicted: np.ndarray, truth: np.ndarray, *, n_bins: int = 10) -> float:
    """Σ_b (n_b / n) |mean predicted − mean true probability| over ``n_bins`` bins of equal
    count by predicted probability."""
    predicted = np.asarray(predicted, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    if predicted.shape != truth.shape or predicted.size == 0:
        raise ValueError("predicted and truth must be non-empty and of the same shape")
    order = np.argsort(predicted, kind="stable")
    total = 0.0
    for rows in np.array_split(order, min(n_bins, predicted.size)):
        total += rows.size * abs(float(predicted[rows].mean() - truth[rows].mean()))
    return total / predicted.size


def paired_interval(differences: list[float], *, level: float = 0.95) -> dict[str, float | None]:
    """Mean of per-seed differences with its two-sided Student t interval (None with one
    seed)."""
    from scipy.stats import t as student

    d = np.asarray(differences, dtype=np.float64)
    if d.size == 0:
        raise ValueError("differences must hold at least one value")
    mean = float(d.mean())
    if d.size < 2:
        return {"mean": mean, "lo": None, "hi": None}
    half = (
        float(student.ppf(0.5 + level / 2.0, d.size - 1)) * float(d.std(ddof=1)) / math.sqrt(d.size)
    )
    return {"mean": mean, "lo": mean - half, "hi": mean + half}
