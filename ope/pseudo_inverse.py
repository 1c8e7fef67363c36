"""The pseudo-inverse (PI) slate estimator of Swaminathan et al. (2017), "Off-policy evaluation for
slate recommendation", NeurIPS 2017, §3.

A slate s fills K slots from n candidates; 1_s ∈ {0, 1}^(K·n) marks (slot j, candidate a) when
s_j = a. PI assumes the expected slate reward is linear in those indicators,
E[r | x, s] = 1_sᵀ φ_x, which the simulated world's position-based reward is (DESIGN.md §7). With
q_π = E_π[1_s] (K·n,) the target's (slot, item) marginals and Γ_μ = E_μ[1_s 1_sᵀ] (K·n, K·n)
the logging policy's pairwise marginals, the paper's estimator is

    V̂_PI = (1/N) Σ_i r_i · q_πᵀ Γ_μ† 1_{s_i},

unbiased when q_π lies in the range of Γ_μ (the target stays where the logging policy explores).
``pseudo_inverse_weights`` computes the weight w(s) = q_πᵀ Γ_μ† 1_s for any small policy given
Γ_μ explicitly (slates enumerated with ``slate_probability``; n ≤ 8).

**Closed form for uniform logging without replacement** (``PseudoInverse``, the per-row
estimator). Let μ draw an ordered K-subset of a pool of M candidates uniformly. Then Γ_μ has
1/M on its diagonal, 0 between two items in one slot or one item in two slots, and 1/(M(M − 1))
between different items in different slots. Looking for θ = Γ_μ† q_π of the form
θ_ja = α q_j(a) + β Q(a) + γ, with Q(a) = Σ_j q_j(a) the target's probability that item a is
anywhere on its slate, and matching the coefficients of (Γ_μ θ)_jb = q_j(b) gives, for K < M,

    θ_ja = (M − 1) q_j(a) + (M − 1)/(M − K) · Q(a) − (K − 1) M / (K (M − K)),
    w(s) = Σ_j θ_{j, s_j}
         = (M − 1) Σ_j q_j(s_j) + (M − 1)/(M − K) · Σ_j Q(s_j) − (K − 1) M / (M − K),

and for K = M (every slate is a permutation of the pool, so Q ≡ 1),
w(s) = (M − 1) Σ_j q_j(s_j) − (M − 2). K = 1 gives w = M q(s_1), IPS. Both forms equal
q_πᵀ Γ_μ† 1_s to 1e-12 (tests/ope/test_ope_pseudo_inverse.py checks them against numpy's pinv).

The shortcut w = Σ_j q_j(s_j)/p_j(s_j) − (K − 1) is the PI weight when each slot is logged
independently (Γ_μ's off-diagonal blocks are then p_j p_kᵀ). Without replacement it is biased:
w must also see Q(s_j), the target's chance of showing the logged item at *another* slot. With
M = 3, K = 2 and a target that always shows (a, b), the slates (b, a) and (b, c) have the same
q_1(s_1) = q_2(s_2) = 0, yet their PI weights are 1 and −1. So the per-row input is

- ``pscore``: the logged marginal 1/M (the same on every row of a decision);
- ``target_pscore``: q_j(s_j), the target's probability of the row's item at the row's slot;
- ``target_pscore_item``: Q(s_j), the target's probability of the row's item at any slot;
- ``pscore_slate``: the logged slate's probability, which must be (M − K)!/M!; with the
  marginals it tells uniform logging from ε-greedy logging that explored (which has the same
  marginal on every row of an explored slate);
- ``reward`` per row; the decision's slate reward is the sum of its rows, r_i = Σ_k r_ik.

The per-decision term is w_i r_i (the row term w_i r_ik, summed), so the estimate streams and
merges like every estimator here. Weights can be negative; the diagnostics (ESS, largest weight)
describe the per-decision PI weights w_i on every row, as the whole-slate IPS does.
"""

from __future__ import annotations

import itertools
import math
from typing import Protocol

import numpy as np

from ope.batch import OpeBatch, OpeInputError
from ope.estimators import Bounds, Estimator, Partial, per_decision
from ope.intervals import bernstein_interval

_UNIFORM_TOLERANCE = 1e-9
MAX_ENUMERATED_CANDIDATES = 8


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def uniform_pool_sizes(batch: OpeBatch) -> tuple[np.ndarray, np.ndarray] | str:
    """(M, K) per decision when every decision was logged uniformly without replacement over a
    pool of M candidates with all K slots as rows; otherwise a message naming the first row that
    shows it was not."""
    if batch.pscore_slate is None:
        return "the input lacks pscore_slate"
    n_dec = batch.n_decisions
    k = np.bincount(batch.decision, minlength=n_dec)  # rows per decision
    pool = 1.0 / batch.pscore
    m_row = np.rint(pool)
    bad = np.abs(pool - m_row) > _UNIFORM_TOLERANCE * pool
    if bad.any():
        row = _first(bad)
        return f"pscore {batch.pscore[row]} at row {row} is not 1/M for a whole pool size M"
    m = np.zeros(n_dec)
    m[batch.decision] = m_row
    bad = m[batch.decision] != m_row
    if bad.any():
        row = _first(bad)
        return f"pscore differs within the decision of row {row}"
    bad = (batch.slot >= k[batch.decision]) | (m_row < k[batch.decision])
    if bad.any():
        row = _first(bad)
        return (
            f"row {row} has slot {batch.slot[row]} with {k[batch.decision[row]]} rows in its "
            f"decision and pool size {int(m_row[row])}: every slot 0..K-1 must be a row, K <= M"
        )
    span = batch.decision.astype(np.int64) * (int(batch.slot.max()) + 1) + batch.slot
    if np.unique(span).size != span.size:
        return "a decision has two rows at the same slot"
    log_slate = per_decision(batch, -np.log(m_row - batch.slot))  # log((M − K)!/M!)
    bad_decision = np.abs(log_slate - np.log(batch.pscore_slate[_first_rows(batch)])) > 1e-9
    if bad_decision.any():
        row = int(_first_rows(batch)[_first(bad_decision)])
        return (
            f"pscore_slate {batch.pscore_slate[row]} at row {row} is not (M - K)!/M! for "
            f"M = {int(m_row[row])}, K = {k[batch.decision[row]]}"
        )
    return m, k.astype(np.float64)


def _first_rows(batch: OpeBatch) -> np.ndarray:
    """(n_decisions,) the first row of each decision."""
    first = np.full(batch.n_decisions, batch.n_rows)
    np.minimum.at(first, batch.decision, np.arange(batch.n_rows))
    return first


def uniform_slate_weights(
    *, q: np.ndarray, q_item: np.ndarray, pool: np.ndarray, k: np.ndarray
) -> np.ndarray:
    """θ_{j, s_j} per row for uniform logging without replacement (the module docstring);
    a decision's PI weight is the sum of its rows'.

    Args:
        q: (n,) q_j(s_j), the target's probability of the row's item at the row's slot.
        q_item: (n,) Q(s_j), the target's probability of the row's item at any slot.
        pool: (n,) M, the logging pool size of the row's decision.
        k: (n,) K, the slate size of the row's decision.
    """
    partial_pool = k < pool
    gap = np.where(partial_pool, pool - k, 1.0)
    theta_partial = (pool - 1.0) * q + (pool - 1.0) / gap * q_item - (k - 1.0) * pool / (k * gap)
    theta_full = (pool - 1.0) * q - (pool - 2.0) / pool
    return np.where(partial_pool, theta_partial, theta_full)


class PseudoInverse(Estimator):
    """V̂_PI = (1/N) Σ_i w_i Σ_k r_ik under uniform logging without replacement (see the module
    docstring for w_i). Needs ``pscore_slate`` (with its target twin) and
    ``target_pscore_item``; ``supports`` is False, and ``estimate`` raises naming the row, when
    the batch was not logged uniformly over a pool."""

    name = "pi"
    requires = ("pscore_slate", "target_pscore_item")

    def supports(self, batch: OpeBatch) -> bool:
        return super().supports(batch) and not isinstance(uniform_pool_sizes(batch), str)

    def _weight(self, batch: OpeBatch) -> np.ndarray:
        sizes = uniform_pool_sizes(batch)
        if isinstance(sizes, str):
            raise OpeInputError(f"pi needs uniform logging without replacement: {sizes}")
        q_item = batch.target_pscore_item
        if q_item is None:  # estimate() checks first; this guards direct calls
            raise ValueError("the batch has no target_pscore_item")
        below = q_item < batch.target_pscore - 1e-12
        if below.any():
            row = _first(below)
            raise OpeInputError(
                f"target_pscore_item must be at least target_pscore; got {q_item[row]} < "
                f"{batch.target_pscore[row]} at row {row}"
            )
        pool, k = sizes
        theta = uniform_slate_weights(
            q=batch.target_pscore, q_item=q_item, pool=pool[batch.decision], k=k[batch.decision]
        )
        return per_decision(batch, theta)[batch.decision]

    def _round_terms(self, batch: OpeBatch) -> np.ndarray:
        return self._weight(batch) * batch.reward

    @property
    def has_bernstein(self) -> bool:
        """PI is a plain mean of bounded decision terms; ``_bernstein`` bounds them."""
        return True

    def _bernstein(
        self, partial: Partial, value: float, bounds: Bounds, alpha: float
    ) -> tuple[float, float]:
        """The decision term w_i Σ_k r_ik with K ≤ the most slots seen and M ≤ 1 / the smallest
        pscore seen: w ≤ K (M − 1) + 1 (a target that always shows the logged slate) and
        w ≥ −(K² − 1) (the constant term at M = K + 1). ``bounds.weight_max`` is not used."""
        if partial.value_min < bounds.reward_min or partial.value_max > bounds.reward_max:
            raise ValueError(
                f"rewards lie in [{partial.value_min}, {partial.value_max}], outside the bounds "
                f"[{bounds.reward_min}, {bounds.reward_max}] the Bernstein interval assumes"
            )
        k, pool = partial.slots, 1.0 / partial.min_pscore
        weights = (-(k * k - 1.0), k * (pool - 1.0) + 1.0)
        rewards = (k * bounds.reward_min, k * bounds.reward_max)
        products = [w * r for w in weights for r in rewards]
        variance = float(partial.moments.covariance()[0, 0])
        span = max(products) - min(products)
        return bernstein_interval(value, variance, partial.moments.n, span, alpha)


# ---- the general form, for small candidate sets ---------------------------------------------


class HasSlateProbability(Protocol):
    def slate_probability(self, scores: np.ndarray, slate: np.ndarray) -> float: ...


def ordered_slates(n: int, k: int) -> np.ndarray:
    """(n!/(n − k)!, k) every ordered slate of k distinct candidates out of n (n ≤ 8)."""
    if not 1 <= k <= n <= MAX_ENUMERATED_CANDIDATES:
        raise ValueError(
            f"need 1 <= k <= n <= {MAX_ENUMERATED_CANDIDATES} to enumerate slates; got n={n}, k={k}"
        )
    return np.array(list(itertools.permutations(range(n), k)), dtype=np.int64)


def slate_indicators(slates: np.ndarray, n: int) -> np.ndarray:
    """(S, K·n) 1_s for each slate (S, K): entry j·n + a is 1 when slot j shows candidate a."""
    s, k = slates.shape
    out = np.zeros((s, k * n))
    out[np.arange(s)[:, None], np.arange(k) * n + slates] = 1.0
    return out


def slate_distribution(
    policy: HasSlateProbability, scores: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """(slates (S, k), probabilities (S,)) of a policy on one candidate list, by enumeration."""
    scores = np.asarray(scores, dtype=np.float64)
    slates = ordered_slates(scores.size, k)
    probabilities = np.array([policy.slate_probability(scores, s) for s in slates])
    total = probabilities.sum()
    if not math.isclose(total, 1.0, rel_tol=0.0, abs_tol=1e-9):
        raise ValueError(f"the policy's slate probabilities sum to {total}, not 1")
    return slates, probabilities


def pairwise_marginals(slates: np.ndarray, probabilities: np.ndarray, n: int) -> np.ndarray:
    """Γ = E[1_s 1_sᵀ] (K·n, K·n) of a distribution over slates."""
    indicators = slate_indicators(slates, n)
    return indicators.T @ (probabilities[:, None] * indicators)


def position_marginals(slates: np.ndarray, probabilities: np.ndarray, n: int) -> np.ndarray:
    """q = E[1_s] (K·n,): entry j·n + a is P(candidate a at slot j)."""
    return probabilities @ slate_indicators(slates, n)


def pseudo_inverse_weights(
    gamma: np.ndarray, q: np.ndarray, slates: np.ndarray, n: int
) -> np.ndarray:
    """w(s) = qᵀ Γ† 1_s (S,) for each slate (S, K), with Γ the logging policy's pairwise
    marginals and q the target's position marginals (Swaminathan et al. 2017's PI weight)."""
    theta = np.linalg.pinv(gamma, rcond=1e-10, hermitian=True) @ q
    return slate_indicators(slates, n) @ theta
