"""The exploration parameters that ε-greedy and random insertion share: how often to explore
(``epsilon``), from how deep a pool of candidates (``pool``), and at which positions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from explore.policy import DecidesFromRanking, validate_positions


def pool_size(pool: int | None, n: int, k: int) -> int:
    """M: the top ``pool`` of n candidates (all n when None), never fewer than the K shown."""
    return n if pool is None else min(n, max(pool, k))


@dataclass(frozen=True, kw_only=True)
class PooledExploration(DecidesFromRanking):
    """``epsilon`` in [0, 1]; ``pool``: exploration draws on the top ``pool`` candidates (None:
    all); ``positions``: the 0-based positions that explore (None: all)."""

    epsilon: float = 0.1
    pool: int | None = None
    positions: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.epsilon <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1]; got {self.epsilon}")
        if self.pool is not None and self.pool < 1:
            raise ValueError(f"pool must be None or >= 1; got {self.pool}")
        validate_positions(self.positions)

    def params(self) -> dict[str, Any]:
        out: dict[str, Any] = {"epsilon": self.epsilon, "pool": self.pool}
        if self.positions is not None:
            out["positions"] = list(self.positions)
        return out

    def _pool_size(self, n: int, k: int) -> int:
        return pool_size(self.pool, n, k)
