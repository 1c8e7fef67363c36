"""The sizes of the ``loopbreak ope coverage`` experiment (kept apart from the world that runs
it, so that ``loopbreak --help`` shows the defaults without importing numpy or pandas)."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True, kw_only=True)
class CoverageWorldConfig:
    """Sizes of the coverage experiment; the defaults run 200 repetitions in about a minute."""

    seed: int = 0
    n_items: int = 150
    n_users: int = 100
    pool_requests: int = 1000
    candidates: int = 8
    k: int = 3
    decisions: int = 500
    target_epsilon: float = 0.3
    score_noise: float = 1.0
    days: float = 30.0

    def __post_init__(self) -> None:
        if not 1 <= self.k <= self.candidates:
            raise ValueError(f"k must be in [1, candidates={self.candidates}]; got {self.k}")
        if self.decisions < 10:
            raise ValueError(f"decisions must be >= 10; got {self.decisions}")
        if self.pool_requests < 1:
            raise ValueError(f"pool_requests must be >= 1; got {self.pool_requests}")
        if not 0.0 <= self.target_epsilon <= 1.0:
            raise ValueError(f"target_epsilon must be in [0, 1]; got {self.target_epsilon}")

    def as_dict(self) -> dict[str, float | int | str]:
        return asdict(self)
