"""Weighted logistic regression with an L2 penalty, fitted by Newton's method.

Small and exact for the handful of features the baseline uses; the transformer FM replaces it
for anything larger.
"""

from __future__ import annotations

import logging

import numpy as np

logger = logging.getLogger(__name__)


def sigmoid(z: np.ndarray) -> np.ndarray:
    """σ(z), computed as (1 + tanh(z / 2)) / 2, which never overflows."""
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def fit_logistic(
    X: np.ndarray,
    y: np.ndarray,
    *,
    sample_weight: np.ndarray | None = None,
    l2: float = 1.0,
    max_iter: int = 50,
    tol: float = 1e-8,
) -> np.ndarray:
    """Coefficients minimising Σ w·logloss + l2/2·|β[1:]|² (column 0 is the unpenalised bias).

    Args:
        X: (m, F) design matrix with a bias column first.
        y: (m,) labels in {0, 1}.
        sample_weight: (m,) non-negative weights, default 1.
    """
    m, f = X.shape
    w = np.ones(m) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    if y.shape != (m,) or w.shape != (m,):
        raise ValueError(f"y and sample_weight must have shape ({m},)")
    if np.any(w < 0) or not np.all(np.isfinite(w)):
        raise ValueError("sample_weight must be finite and >= 0")
    penalty = np.full(f, l2)
    penalty[0] = 0.0
    beta = np.zeros(f)
    p_mean = np.clip(np.average(y, weights=w), 1e-6, 1 - 1e-6)
    beta[0] = np.log(p_mean / (1 - p_mean))
    for iteration in range(max_iter):
        p = sigmoid(X @ beta)
        grad = X.T @ (w * (p - y)) + penalty * beta
        hess = (X * (w * p * (1 - p))[:, None]).T @ X + np.diag(penalty + 1e-9)
        step = np.linalg.solve(hess, grad)
        beta -= step
        if np.max(np.abs(step)) < tol:
            logger.debug("logistic fit converged after %d iterations", iteration + 1)
            break
    return beta


def predict_logistic(X: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """σ(X β)."""
    return sigmoid(X @ beta)
