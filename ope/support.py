"""Support diagnostics: how much of the target policy lies where the logging policy never goes.

Importance weighting only sees what the logging policy can show. Where the target puts mass on
(position, item) pairs the logging policy never uses, no logged row carries that mass, and every
importance-weighted estimate (IPS, SNIPS, the DR family's correction, the slate estimators) is
biased for it, whatever its interval says. The classic case: ε-greedy logging explores only its
own pool (the top M of the *old* scores), and a new model's slates land outside it; the FM demo's
round-4 IPS read 0.093 against a true 0.549 that way.

Per decision i with the logging marginals p_k(a) and the target marginals q_k(a) (K, n), the
unsupported mass is

    u_i = Σ_k Σ_a q_k(a) · [p_k(a) = 0]   ∈ [0, K],

the expected number of the target's slate positions filled with a (position, item) the logging
policy never shows; u_i / K is its share of the target's slate. ``support_diagnostics`` averages
it over decisions and adds the share of logged rows with zero target propensity (the other side:
logged rows the target never shows, harmless for bias but a loss of effective sample size).

Both policies' marginals must be exact (``explore``'s ``marginals``); propensities are never
rounded, so "never shows" is an exact 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from ope.batch import OpeBatch

UNSUPPORTED_SHARE_LIMIT = 0.01
"""A suggested gate: at most 1% of the target's slate outside the logging support."""


def thin(
    logging_marginals: np.ndarray, target_marginals: np.ndarray, max_weight: float = math.inf
) -> np.ndarray:
    """(K', n) where the target's mass is outside the logging support: p_k(a) = 0, or a weight
    q_k(a) / p_k(a) above ``max_weight`` (so thinly supported that a window of N decisions
    expects fewer than N / max_weight logged rows there); positions beyond the logging
    policy's K are all outside."""
    p = np.asarray(logging_marginals, dtype=np.float64)
    q = np.asarray(target_marginals, dtype=np.float64)
    if p.ndim != 2 or q.ndim != 2 or p.shape[1] != q.shape[1]:
        raise ValueError(
            "logging_marginals and target_marginals must be (positions, candidates) over the "
            f"same candidates; got shapes {p.shape} and {q.shape}"
        )
    out = np.ones(q.shape, dtype=bool)
    shared = min(p.shape[0], q.shape[0])
    with np.errstate(invalid="ignore"):
        out[:shared] = (p[:shared] <= 0.0) | (q[:shared] > p[:shared] * max_weight)
    return out


def unsupported_mass(
    logging_marginals: np.ndarray, target_marginals: np.ndarray, max_weight: float = math.inf
) -> float:
    """u = Σ_k Σ_a q_k(a) [p_k(a) = 0] for one decision; with ``max_weight``, also the mass
    whose weight q_k(a) / p_k(a) exceeds it (``thin``).

    Args:
        logging_marginals: (K, n) the logging policy's P(candidate a at position k).
        target_marginals: (K', n) the target's, on the same candidates; positions beyond the
            logging policy's K count as unsupported (the logging policy never filled them).
    """
    q = np.asarray(target_marginals, dtype=np.float64)
    return float(np.sum(q * thin(logging_marginals, q, max_weight)))


def support_diagnostics(
    *,
    logging_marginals: Iterable[np.ndarray] | None = None,
    target_marginals: Iterable[np.ndarray] | None = None,
    batch: OpeBatch | None = None,
) -> dict[str, float]:
    """Support diagnostics over logged decisions, for reports and the gate.

    Args:
        logging_marginals: per decision, (K, n) the logging policy's marginals on its logged
            candidates (e.g. ``policy.marginals(candidate_scores, k)`` of the policy that logged
            it, rebuilt from the logged exploration parameters).
        target_marginals: per decision, (K, n) the target's marginals on the same candidates
            (``ope.replay.replay_slate(...).marginals``), in the same order.
        batch: the replayed OPE rows, for the share of rows with zero target propensity.

    Returns:
        A dict with, when both marginals are given:

        - ``unsupported_mass``: mean over decisions of u_i (in [0, K]);
        - ``unsupported_share``: mean of u_i / K_i, the share of the target's slate the logs
          cannot see (in [0, 1]; compare with ``UNSUPPORTED_SHARE_LIMIT``);
        - ``unsupported_max``: the largest u_i;
        - ``unsupported_decisions_share``: the share of decisions with u_i > 0;
        - ``support_decisions``: how many decisions were compared;

        and, when ``batch`` is given, ``zero_target_share``: the share of its rows with zero
        target propensity.
    """
    if (logging_marginals is None) != (target_marginals is None):
        raise ValueError("logging_marginals and target_marginals must be given together")
    out: dict[str, float] = {}
    if logging_marginals is not None and target_marginals is not None:
        masses, shares = [], []
        pairs = zip(logging_marginals, target_marginals, strict=True)
        for i, (p, q) in enumerate(pairs):
            try:
                u = unsupported_mass(p, q)
            except ValueError as error:
                raise ValueError(f"decision {i}: {error}") from None
            masses.append(u)
            shares.append(u / max(np.shape(q)[0], 1))
        if not masses:
            raise ValueError("support diagnostics need at least one decision")
        mass = np.asarray(masses)
        out |= {
            "unsupported_mass": float(mass.mean()),
            "unsupported_share": float(np.mean(shares)),
            "unsupported_max": float(mass.max()),
            "unsupported_decisions_share": float(np.mean(mass > 0.0)),
            "support_decisions": float(mass.size),
        }
    if batch is not None:
        out["zero_target_share"] = float(np.mean(batch.target_pscore == 0.0))
    return out
