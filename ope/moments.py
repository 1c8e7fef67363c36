"""Mergeable sufficient statistics of an estimator over a chunk of decisions.

Every estimator in ``ope`` is a smooth function V = f(z̄) of the mean of a per-decision vector
z_i (d,): for IPS-like estimators z_i is the decision's summed term (d = 1); for self-normalized
ones it holds the summed numerator and denominator of every slot. So three small objects carry
everything a chunk contributes, and merge exactly:

- ``Moments``: count, mean and centered second moments of z (Chan, Golub & LeVeque's pairwise
  update, stable where Σzzᵀ − n z̄z̄ᵀ would cancel). The delta method gives the variance of V.
- ``WeightStats``: rows, Σw, Σw², max w, rows with zero target propensity, and named row counts
  (rows clipped, switched): the diagnostics.
- ``BootstrapSums``: for B Poisson(1) bootstrap replicates, Σ_i m_ib z_i and Σ_i m_ib, where the
  multiplicity m_ib is a hash of the decision's key and b (Hanley & MacGibbon 2006; Chamandy et
  al. 2012, "Estimating uncertainty for massive data streams"). A decision gets the same
  multiplicity in whichever chunk it lands, so the streamed replicates equal the in-memory ones.

z vectors of different chunks may differ in length when a later chunk has more slots: shorter
ones are padded with zeros at the end, which is why estimators lay z out slot by slot.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def _pad(vector: np.ndarray, d: int) -> np.ndarray:
    if vector.shape[-1] == d:
        return vector
    width = [(0, 0)] * (vector.ndim - 1) + [(0, d - vector.shape[-1])]
    return np.pad(vector, width)


def _pad_square(matrix: np.ndarray, d: int) -> np.ndarray:
    k = matrix.shape[0]
    return matrix if k == d else np.pad(matrix, ((0, d - k), (0, d - k)))


@dataclass(frozen=True)
class Moments:
    """Count n, mean (d,) and centered sum of outer products m2 (d, d) of per-decision z."""

    n: int
    mean: np.ndarray
    m2: np.ndarray

    @classmethod
    def of(cls, z: np.ndarray) -> Moments:
        """From per-decision vectors z (n, d); a Fortran-ordered z (column by column, as the
        estimators build it) is read without a copy."""
        n, d = z.shape
        if n == 0:
            return cls(0, np.zeros(d), np.zeros((d, d)))
        if d == 1:  # a dot product of vectors is much faster than an (n, 1) matmul
            column = z[:, 0]
            mean = column.mean()
            centered = column - mean
            return cls(n, np.array([mean]), np.array([[centered @ centered]]))
        rows = np.ascontiguousarray(z.T)  # (d, n)
        mean = rows.mean(axis=1)
        centered = rows - mean[:, None]
        return cls(n, mean, centered @ centered.T)

    @property
    def dim(self) -> int:
        return int(self.mean.size)

    def merge(self, other: Moments) -> Moments:
        d = max(self.dim, other.dim)
        a_mean, b_mean = _pad(self.mean, d), _pad(other.mean, d)
        a_m2, b_m2 = _pad_square(self.m2, d), _pad_square(other.m2, d)
        n = self.n + other.n
        if self.n == 0 or other.n == 0:
            return Moments(n, a_mean if other.n == 0 else b_mean, a_m2 if other.n == 0 else b_m2)
        delta = b_mean - a_mean
        mean = a_mean + delta * (other.n / n)
        m2 = a_m2 + b_m2 + np.outer(delta, delta) * (self.n * other.n / n)
        return Moments(n, mean, m2)

    def covariance(self) -> np.ndarray:
        """(d, d) sample covariance (ddof 1); inf when n < 2."""
        if self.n < 2:
            return np.full_like(self.m2, np.inf)
        return self.m2 / (self.n - 1)


@dataclass(frozen=True)
class WeightStats:
    """Row-level sums behind the diagnostics; ``counts`` holds named row counts."""

    rows: int
    weight_sum: float
    weight_sq_sum: float
    max_weight: float
    zero_target: int
    counts: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, weight: np.ndarray, counts: dict[str, int] | None = None) -> WeightStats:
        """From importance weights; a weight is 0 exactly when the target propensity is, since
        logging propensities are positive."""
        return cls(
            rows=int(weight.size),
            weight_sum=float(weight.sum()),
            weight_sq_sum=float(np.sum(weight**2)),
            max_weight=float(weight.max()) if weight.size else 0.0,
            zero_target=int(np.sum(weight == 0.0)),
            counts=dict(counts or {}),
        )

    def merge(self, other: WeightStats) -> WeightStats:
        names = self.counts.keys() | other.counts.keys()
        return WeightStats(
            rows=self.rows + other.rows,
            weight_sum=self.weight_sum + other.weight_sum,
            weight_sq_sum=self.weight_sq_sum + other.weight_sq_sum,
            max_weight=max(self.max_weight, other.max_weight),
            zero_target=self.zero_target + other.zero_target,
            counts={k: self.counts.get(k, 0) + other.counts.get(k, 0) for k in sorted(names)},
        )

    def diagnostics(self) -> dict[str, float]:
        """Effective sample size (Σw)²/Σw², largest weight, share of rows with zero target
        propensity, mean weight (close to 1 when the propensities are right), and each named
        count as a share of rows."""
        rows = max(self.rows, 1)
        ess = self.weight_sum**2 / self.weight_sq_sum if self.weight_sq_sum > 0 else 0.0
        out = {
            "ess": float(ess),
            "max_weight": self.max_weight,
            "zero_target_share": self.zero_target / rows,
            "mean_weight": self.weight_sum / rows,
        }
        out.update({f"{name}_share": count / rows for name, count in self.counts.items()})
        return out


# Poisson(1) inverse CDF on a 53-bit uniform: P(m > 18) < 1e-17, far below the uniform's grain.
_POISSON_CDF = np.cumsum(
    [np.exp(-1.0) / float(np.prod(np.arange(1, k + 1, dtype=np.float64))) for k in range(19)]
)
_BLOCK = 65_536  # decisions hashed at a time, to bound memory at B × block uint64s


def _mix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finalizer, a bijection of uint64 that spreads every input bit."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def poisson_multiplicities(keys: np.ndarray, n_bootstrap: int, seed: int) -> np.ndarray:
    """(B, n) Poisson(1) multiplicities, a pure function of (seed, replicate, decision key)."""
    keys = np.asarray(keys, dtype=np.uint64)
    replicate = (np.arange(n_bootstrap, dtype=np.uint64) + np.uint64(1)) * np.uint64(
        0x9E3779B97F4A7C15
    )
    salt = _mix64(np.asarray([seed], dtype=np.uint64) + np.uint64(0xD1B54A32D192ED03))
    with np.errstate(over="ignore"):
        bits = _mix64(_mix64(keys[None, :] ^ salt) + replicate[:, None])
    uniform = (bits >> np.uint64(11)).astype(np.float64) * 2.0**-53
    return np.searchsorted(_POISSON_CDF, uniform, side="right").astype(np.float64)


@dataclass(frozen=True)
class BootstrapSums:
    """Per replicate b: Σ_i m_ib z_i (B, d) and Σ_i m_ib (B,)."""

    weighted: np.ndarray
    counts: np.ndarray
    seed: int

    @classmethod
    def of(cls, z: np.ndarray, keys: np.ndarray, *, n_bootstrap: int, seed: int) -> BootstrapSums:
        weighted = np.zeros((n_bootstrap, z.shape[1]))
        counts = np.zeros(n_bootstrap)
        with np.errstate(over="ignore"):
            for start in range(0, z.shape[0], _BLOCK):
                stop = start + _BLOCK
                m = poisson_multiplicities(keys[start:stop], n_bootstrap, seed)  # (B, block)
                weighted += m @ z[start:stop]
                counts += m.sum(axis=1)
        return cls(weighted, counts, seed)

    @property
    def n_bootstrap(self) -> int:
        return int(self.counts.size)

    def merge(self, other: BootstrapSums) -> BootstrapSums:
        if self.n_bootstrap != other.n_bootstrap or self.seed != other.seed:
            raise ValueError(
                "bootstrap partials must share n_bootstrap and seed; got "
                f"({self.n_bootstrap}, {self.seed}) and ({other.n_bootstrap}, {other.seed})"
            )
        d = max(self.weighted.shape[1], other.weighted.shape[1])
        return BootstrapSums(
            _pad(self.weighted, d) + _pad(other.weighted, d), self.counts + other.counts, self.seed
        )

    def replicate_means(self) -> np.ndarray:
        """(B, d) mean of z in each replicate (rows with no decision drawn are NaN)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.weighted / self.counts[:, None]
