"""The Plackett-Luce cost bound and the search for the largest temperature within a budget,
compiled with numba.

``explore.budget`` explains the bound: for a pool p in greedy order (nonincreasing), K
examination weights θ and a uniform mix γ,

    B(T) = Σ_{k<K} θ_k (p_k − L_k(T)),
    L_k  = (1 − γ)·Σ_{i≥k} w_i p_i / Σ_{i≥k} w_i + γ·mean_{i≥k} p_i,

with w_i = exp((p_i − p_0)/T). Each tail is summed from the pool's end in units of its own
first weight: S_k = 1 + S_{k+1}·w_{k+1}/w_k, and w_{k+1}/w_k = exp((p_{k+1} − p_k)/T) ≤ 1, so
nothing overflows however cold T is, and what underflows is below 1e-308 of the tail's first
term. One exponential per pool candidate and temperature.

The temperature is the largest log T in [lo, hi] whose bound is within the budget, to within
``LOG_T_TOLERANCE``: safeguarded false position on log B, which the bound's smooth growth in
log T makes converge in a handful of evaluations, falling back to bisection whenever a step
fails to halve the bracket. The answer is always a point where the bound was evaluated and fit.

``calibrate_pool`` does a request's whole calibration in one call: the largest pool whose uniform
mix (which a propensity floor makes grow with the pool) fits the budget at the coldest
temperature, then the temperature search on that pool.

Why compiled: the search needs a dozen evaluations of an O(M) recurrence per request. In numpy
each evaluation is a dozen array calls of fixed overhead (about 10 µs), which made calibration
the bulk of a calibrated decision; compiled, an evaluation is about 1 µs. numba caches the
machine code beside this file, so only the first import on a machine compiles it.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, types

LOG_T_TOLERANCE = 1e-3  # T found to within 0.1%
_VECTOR = types.Array(types.float64, 1, "A", readonly=True)  # any stride, writable or not


@njit(types.float64(_VECTOR, _VECTOR, types.float64, types.float64), cache=True, nogil=True)
def cost_bound(p: np.ndarray, theta: np.ndarray, uniform_mix: float, log_t: float) -> float:
    """B(T) at T = exp(``log_t``) for the pool ``p`` (greedy order, M ≥ K = θ's size) and the
    weights ``theta``: an exact upper bound on the cost in plays."""
    m = p.size
    k = theta.size
    inverse = math.exp(-log_t)
    tail_w = 1.0  # Σ_{i≥j} w_i in units of w_j
    tail_wp = p[m - 1]  # Σ_{i≥j} w_i p_i in units of w_j
    tail_p = p[m - 1]  # Σ_{i≥j} p_i
    cost = 0.0  # the last candidate's tail is itself: it adds nothing when M = K
    for j in range(m - 2, -1, -1):
        ratio = math.exp((p[j + 1] - p[j]) * inverse)  # w_{j+1} / w_j ≤ 1
        tail_w = 1.0 + tail_w * ratio
        tail_wp = p[j] + tail_wp * ratio
        tail_p += p[j]
        if j < k:
            least = (1.0 - uniform_mix) * (tail_wp / tail_w) + uniform_mix * tail_p / (m - j)
            cost += theta[j] * (p[j] - least)
    return cost


@njit(
    types.UniTuple(types.float64, 2)(
        _VECTOR, _VECTOR, types.float64, types.float64, types.float64, types.float64
    ),
    cache=True,
    nogil=True,
)
def largest_log_temperature(
    p: np.ndarray, theta: np.ndarray, uniform_mix: float, lo: float, hi: float, allowed: float
) -> tuple[float, float]:
    """(log T, its bound): the largest log T in [``lo``, ``hi``] with B(T) ≤ ``allowed``, to
    within ``LOG_T_TOLERANCE``; (NaN, NaN) when even ``lo`` does not fit."""
    cost_lo = cost_bound(p, theta, uniform_mix, lo)
    if not cost_lo <= allowed:
        return math.nan, math.nan
    cost_hi = cost_bound(p, theta, uniform_mix, hi)
    if cost_hi <= allowed:
        return hi, cost_hi
    target = math.log(allowed) if allowed > 0.0 else -math.inf
    width = hi - lo
    steps_since_halving = 0
    while hi - lo > LOG_T_TOLERANCE:
        x = 0.5 * (lo + hi)
        if steps_since_halving < 2 and cost_lo > 0.0 and target > -math.inf:
            # False position on log B, which is close to linear in log T near the answer.
            f_lo = math.log(cost_lo) - target
            f_hi = math.log(cost_hi) - target
            if f_hi > f_lo:
                x = lo + (hi - lo) * (-f_lo) / (f_hi - f_lo)
            # Stay far enough inside the bracket that either outcome shrinks it.
            nudge = 0.5 * LOG_T_TOLERANCE
            x = min(max(x, lo + nudge), hi - nudge)
        cost = cost_bound(p, theta, uniform_mix, x)
        if cost <= allowed:
            lo, cost_lo = x, cost
        else:
            hi, cost_hi = x, cost
        if hi - lo <= 0.5 * width:
            width = hi - lo
            steps_since_halving = 0
        else:
            steps_since_halving += 1
    return lo, cost_lo


# calibrate_pool's answer when every candidate of the chosen pool has the same score: any
# temperature shuffles them at no cost.
FLAT_POOL = math.inf


@njit(types.float64(types.float64, types.float64, types.int64), cache=True, nogil=True)
def pool_mix(floor: float, base_mix: float, m: int) -> float:
    """The uniform mix a pool of ``m`` needs: γ = floor·M, at least ``base_mix``, at most 1."""
    return max(base_mix, min(1.0, floor * m))


@njit(types.UniTuple(types.float64, 2)(_VECTOR, types.int64, types.float64, types.float64),
      cache=True, nogil=True)  # fmt: skip
def log_temperature_range(p: np.ndarray, m: int, low: float, high: float) -> tuple[float, float]:
    """[log T] searched for a pool of the first ``m`` of ``p``: ``low`` and ``high`` times the
    spread of its scores."""
    spread = max(p[0] - p[m - 1], 1e-12)
    return math.log(low * spread), math.log(high * spread)


@njit(
    types.float64(
        _VECTOR, _VECTOR, types.int64, types.float64, types.float64, types.float64, types.float64
    ),
    cache=True,
    nogil=True,
)
def coldest_cost(
    p_all: np.ndarray,
    theta: np.ndarray,
    m: int,
    floor: float,
    base_mix: float,
    low: float,
    high: float,
) -> float:
    """The bound of a pool of the first ``m`` of ``p_all``, with its mix, at its coldest
    temperature: the least that pool can cost."""
    coldest = log_temperature_range(p_all, m, low, high)[0]
    return cost_bound(p_all[:m], theta, pool_mix(floor, base_mix, m), coldest)


@njit(
    types.Tuple((types.int64, types.float64, types.float64, types.float64))(
        _VECTOR, _VECTOR, types.int64, types.float64, types.float64, types.float64, types.float64,
        types.float64,
    ),
    cache=True,
    nogil=True,
)  # fmt: skip
def calibrate_pool(
    p_all: np.ndarray,
    theta: np.ndarray,
    m_max: int,
    floor: float,
    base_mix: float,
    allowed: float,
    low: float,
    high: float,
) -> tuple[int, float, float, float]:
    """(M, its uniform mix, log T, its bound) for the scores ``p_all`` in greedy order (at least
    ``m_max`` of them), K = θ's size ≤ ``m_max``:

    - M is ``m_max`` when its mix ``pool_mix(floor, base_mix, M)`` fits ``allowed`` at the
      coldest temperature (or needs no mix), else the largest M ≥ K that does; 0 when not even
      K does (greedy);
    - log T is ``largest_log_temperature`` on that pool over ``log_temperature_range``: NaN
      when not even the coldest fits (greedy), ``FLAT_POOL`` when the pool's scores are all
      equal (its bound is then 0).
    """
    k = theta.size
    m = m_max
    mixed = pool_mix(floor, base_mix, m) > 0.0  # a floor's mix grows with the pool
    if mixed and coldest_cost(p_all, theta, m, floor, base_mix, low, high) > allowed:
        if coldest_cost(p_all, theta, k, floor, base_mix, low, high) > allowed:
            return 0, math.nan, math.nan, math.nan
        fits, too_big = k, m_max
        while too_big - fits > 1:
            mid = (fits + too_big) // 2
            if coldest_cost(p_all, theta, mid, floor, base_mix, low, high) <= allowed:
                fits = mid
            else:
                too_big = mid
        m = fits
    mix = pool_mix(floor, base_mix, m)
    if p_all[0] == p_all[m - 1]:
        return m, mix, FLAT_POOL, 0.0
    lo, hi = log_temperature_range(p_all, m, low, high)
    log_t, spent = largest_log_temperature(p_all[:m], theta, mix, lo, hi, allowed)
    return m, mix, log_t, spent
