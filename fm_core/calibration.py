"""Calibration of the ranker's logits into P(play) on held-out data, and how to measure it.

Two maps from a logit z to a probability, both fitted on held-out impressions (never the rows
the ranker learned from):

- **temperature** (Platt scaling, Platt 1999; Guo et al. 2017 without the bias):
  p = σ(a·z + b), with (a, b) minimizing the weighted log loss (Newton's method; a tiny ridge
  keeps it defined when the labels are separable);
- **isotonic**: the non-decreasing step function of z that minimizes the weighted squared error,
  found by pool-adjacent-violators (Ayer et al. 1955), and interpolated linearly between the
  blocks' mean logits. PAV is written here by hand because ``fm_core`` may import only torch,
  numpy and the standard library (no scikit-learn).

``method="auto"`` picks between them by two-fold cross-fitted log loss on the held-out rows.
Probabilities are clipped to [1e-6, 1 − 1e-6], so a downstream log or odds stays finite.

**Reliability and ECE.** Rows are cut into ``n_bins`` bins of equal weight by predicted
probability (``strategy="quantile"``; with plays as rare as a few percent, equal-width bins
would put almost every row in the first bin) or of equal width (``"uniform"``). Per bin: the
count, the mean prediction and the observed play rate; ECE = Σ_b (w_b / w) · |observed_b −
predicted_b| (Naeini et al. 2015).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

CALIBRATION_METHODS = ("identity", "temperature", "isotonic", "auto")
_EPS = 1e-6


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _check_rows(
    scores: np.ndarray, labels: np.ndarray, weights: np.ndarray | None, *, name: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    if scores.ndim != 1 or labels.shape != scores.shape:
        raise ValueError(
            f"{name} and labels must be 1-D arrays of the same length; got shapes "
            f"{scores.shape} and {labels.shape}"
        )
    if scores.size == 0:
        raise ValueError(f"{name} is empty: calibration needs held-out rows")
    if not np.all(np.isfinite(scores)):
        raise ValueError(f"{name} must be finite; got a non-finite value at row "
                         f"{int(np.flatnonzero(~np.isfinite(scores))[0])}")  # fmt: skip
    if np.any((labels < 0) | (labels > 1)):
        raise ValueError("labels must be in [0, 1]")
    w = np.ones_like(scores) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != scores.shape or np.any(w < 0) or not np.all(np.isfinite(w)):
        raise ValueError("weights must be finite, non-negative and one per row")
    if w.sum() <= 0:
        raise ValueError("weights must not all be 0")
    return scores, labels, w


def pool_adjacent_violators(y: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """The non-decreasing sequence closest to ``y`` in weighted squared error (same shape).

    Blocks are merged left to right whenever a block's mean falls below its left neighbour's;
    a stack of (mean, weight, length) blocks makes it O(n).
    """
    y = np.asarray(y, dtype=np.float64)
    w = np.ones_like(y) if weights is None else np.asarray(weights, dtype=np.float64)
    means: list[float] = []
    masses: list[float] = []
    lengths: list[int] = []
    for value, mass in zip(y.tolist(), w.tolist(), strict=True):
        means.append(value)
        masses.append(mass)
        lengths.append(1)
        while len(means) > 1 and means[-2] > means[-1]:
            m2, w2, n2 = means.pop(), masses.pop(), lengths.pop()
            total = masses[-1] + w2
            if total > 0:
                means[-1] = (means[-1] * masses[-1] + m2 * w2) / total
            else:  # two weightless blocks: keep the left one's value
                means[-1] = min(means[-1], m2)
            masses[-1] = total
            lengths[-1] += n2
    return np.repeat(np.array(means), np.array(lengths, dtype=np.int64))


@dataclass(frozen=True)
class Calibrator:
    """A fitted map from ranker logits to calibrated probabilities.

    Attributes:
        method: "identity", "temperature" or "isotonic".
        scale, bias: p = σ(scale·z + bias) for "temperature" (1 and 0 otherwise).
        knots, values: for "isotonic", the blocks' mean logits (increasing) and fitted
            probabilities (non-decreasing); ``predict`` interpolates between them.
    """

    method: str = "identity"
    scale: float = 1.0
    bias: float = 0.0
    knots: np.ndarray = field(default_factory=lambda: np.empty(0))
    values: np.ndarray = field(default_factory=lambda: np.empty(0))

    def __post_init__(self) -> None:
        if self.method not in CALIBRATION_METHODS[:3]:
            raise ValueError(
                f"method must be one of {CALIBRATION_METHODS[:3]}; got {self.method!r}"
            )
        if self.method == "isotonic" and (
            self.knots.size == 0 or self.knots.shape != self.values.shape
        ):
            raise ValueError("an isotonic calibrator needs knots and values of the same length")

    def predict(self, logits: np.ndarray) -> np.ndarray:
        """Calibrated probabilities of ``logits`` (any shape)."""
        z = np.asarray(logits, dtype=np.float64)
        if self.method == "isotonic":
            p = np.interp(z, self.knots, self.values)
        else:
            p = _sigmoid(self.scale * z + self.bias)
        return np.clip(p, _EPS, 1.0 - _EPS)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready parameters; ``from_dict`` reads them back."""
        return {
            "method": self.method,
            "scale": self.scale,
            "bias": self.bias,
            "knots": self.knots.tolist(),
            "values": self.values.tolist(),
        }

    @classmethod
    def from_dict(cls, params: dict[str, object]) -> Calibrator:
        return cls(
            method=str(params["method"]),
            scale=float(params["scale"]),  # type: ignore[arg-type]
            bias=float(params["bias"]),  # type: ignore[arg-type]
            knots=np.asarray(params["knots"], dtype=np.float64),
            values=np.asarray(params["values"], dtype=np.float64),
        )


def fit_temperature(
    logits: np.ndarray,
    labels: np.ndarray,
    weights: np.ndarray | None = None,
    *,
    ridge: float = 1e-4,
    max_iter: int = 100,
) -> Calibrator:
    """Platt scaling p = σ(a·z + b) by Newton's method on the weighted mean log loss."""
    z, y, w = _check_rows(logits, labels, weights, name="logits")
    w = w / w.sum()
    X = np.stack([z, np.ones_like(z)], axis=1)  # (n, 2)
    prior = np.array([1.0, 0.0])

    def objective(theta: np.ndarray) -> float:
        s = X @ theta
        # log(1 + e^s) − y·s, computed stably
        loss = np.sum(w * (np.logaddexp(0.0, s) - y * s))
        return float(loss + 0.5 * ridge * np.sum((theta - prior) ** 2))

    theta = prior.copy()
    current = objective(theta)
    for _ in range(max_iter):
        p = _sigmoid(X @ theta)
        gradient = X.T @ (w * (p - y)) + ridge * (theta - prior)
        hessian = (X * (w * p * (1.0 - p))[:, None]).T @ X + ridge * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        size = 1.0  # backtracking: pure Newton can overshoot far from the optimum
        while size > 1e-8 and objective(theta - size * step) > current:
            size *= 0.5
        theta = theta - size * step
        previous, current = current, objective(theta)
        if previous - current < 1e-12:
            break
    return Calibrator(method="temperature", scale=float(theta[0]), bias=float(theta[1]))


def fit_isotonic(
    logits: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None
) -> Calibrator:
    """Isotonic regression of the labels on the logits (PAV), as knots for interpolation."""
    z, y, w = _check_rows(logits, labels, weights, name="logits")
    order = np.argsort(z, kind="stable")
    z, y, w = z[order], y[order], w[order]
    # Tied logits must get one value: pool them first.
    unique, start = np.unique(z, return_index=True)
    mass = np.add.reduceat(w, start)
    rate = np.add.reduceat(w * y, start) / np.maximum(mass, 1e-300)
    fitted = pool_adjacent_violators(rate, mass)
    # One knot per PAV block: its weighted mean logit and its value.
    block = np.concatenate([[0], np.cumsum(np.diff(fitted) != 0)])
    block_mass = np.bincount(block, weights=mass)
    keep = block_mass > 0
    knots = np.bincount(block, weights=mass * unique)[keep] / block_mass[keep]
    values = np.bincount(block, weights=mass * fitted)[keep] / block_mass[keep]
    return Calibrator(method="isotonic", knots=knots, values=values)


def log_loss(
    probabilities: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None
) -> float:
    """Weighted mean binary log loss."""
    p, y, w = _check_rows(probabilities, labels, weights, name="probabilities")
    p = np.clip(p, _EPS, 1.0 - _EPS)
    return float(np.sum(w * -(y * np.log(p) + (1 - y) * np.log(1 - p))) / w.sum())


def fit_calibrator(
    logits: np.ndarray,
    labels: np.ndarray,
    weights: np.ndarray | None = None,
    *,
    method: str = "auto",
    seed: int = 0,
) -> Calibrator:
    """Fit ``method`` on held-out rows; "auto" picks temperature or isotonic by two-fold
    cross-fitted log loss, then refits the winner on all rows."""
    if method not in CALIBRATION_METHODS:
        raise ValueError(f"method must be one of {CALIBRATION_METHODS}; got {method!r}")
    z, y, w = _check_rows(logits, labels, weights, name="logits")
    if method == "identity":
        return Calibrator()
    if method == "temperature":
        return fit_temperature(z, y, w)
    if method == "isotonic":
        return fit_isotonic(z, y, w)
    losses = {
        name: log_loss(cross_fitted(z, y, w, method=name, seed=seed), y, w)
        for name in ("temperature", "isotonic")
    }
    best = min(losses, key=losses.__getitem__)
    return fit_temperature(z, y, w) if best == "temperature" else fit_isotonic(z, y, w)


def cross_fitted(
    logits: np.ndarray,
    labels: np.ndarray,
    weights: np.ndarray | None = None,
    *,
    method: str = "temperature",
    seed: int = 0,
) -> np.ndarray:
    """Two-fold cross-fitted calibrated probabilities: each half is predicted by a calibrator
    fitted on the other half, so the result measures calibration out of sample."""
    z, y, w = _check_rows(logits, labels, weights, name="logits")
    fold = np.random.default_rng(seed).permutation(z.size) % 2
    out = np.empty_like(z)
    for k in (0, 1):
        train, test = fold != k, fold == k
        if not train.any() or not test.any():
            return fit_calibrator(z, y, w, method=method).predict(z)
        out[test] = fit_calibrator(z[train], y[train], w[train], method=method).predict(z[test])
    return out


@dataclass(frozen=True)
class ReliabilityBin:
    """One bin of a reliability table: predictions in [lo, hi]."""

    lo: float
    hi: float
    count: int
    weight: float
    mean_predicted: float
    observed_rate: float


def reliability_table(
    probabilities: np.ndarray,
    labels: np.ndarray,
    weights: np.ndarray | None = None,
    *,
    n_bins: int = 10,
    strategy: str = "quantile",
) -> list[ReliabilityBin]:
    """Per bin of predicted probability: count, weight, mean prediction and observed rate."""
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1; got {n_bins}")
    if strategy not in ("quantile", "uniform"):
        raise ValueError(f"strategy must be 'quantile' or 'uniform'; got {strategy!r}")
    p, y, w = _check_rows(probabilities, labels, weights, name="probabilities")
    if np.any((p < 0) | (p > 1)):
        raise ValueError("probabilities must be in [0, 1]")
    order = np.argsort(p, kind="stable")
    p, y, w = p[order], y[order], w[order]
    if strategy == "uniform":
        bins = np.minimum((p * n_bins).astype(np.int64), n_bins - 1)
    else:  # equal weight per bin; ties stay in one bin
        cumulative = np.cumsum(w) - 0.5 * w
        bins = np.minimum((cumulative / w.sum() * n_bins).astype(np.int64), n_bins - 1)
        _, first = np.unique(p, return_index=True)
        bins = bins[first][np.searchsorted(p[first], p, side="right") - 1]
    table = []
    for b in np.unique(bins):
        rows = bins == b
        mass = float(w[rows].sum())
        if mass <= 0:
            continue
        table.append(
            ReliabilityBin(
                lo=float(p[rows].min()),
                hi=float(p[rows].max()),
                count=int(rows.sum()),
                weight=mass,
                mean_predicted=float(np.sum(w[rows] * p[rows]) / mass),
                observed_rate=float(np.sum(w[rows] * y[rows]) / mass),
            )
        )
    return table


def expected_calibration_error(
    probabilities: np.ndarray,
    labels: np.ndarray,
    weights: np.ndarray | None = None,
    *,
    n_bins: int = 10,
    strategy: str = "quantile",
) -> float:
    """ECE = Σ_b (w_b / w) · |observed_b − predicted_b| over the reliability table's bins."""
    table = reliability_table(probabilities, labels, weights, n_bins=n_bins, strategy=strategy)
    total = sum(b.weight for b in table)
    ece = sum(b.weight / total * abs(b.observed_rate - b.mean_predicted) for b in table)
    return float(ece) if math.isfinite(ece) else float("nan")
