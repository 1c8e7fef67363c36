"""The size of the demo (``DemoConfig``), kept apart from the loop that runs it
(:mod:`loop.demo`), so that ``loopbreak --help`` shows its defaults without importing the store,
pandas or the scorer."""

from __future__ import annotations

from dataclasses import dataclass, field

from loop.model_kinds import MODEL_KINDS
from sim.config import WorldConfig


@dataclass(frozen=True, kw_only=True)
class DemoConfig:
    """Size of the demo. The defaults finish in about a minute on two cores."""

    rounds: int = 5
    decisions_per_round: int = 1500
    k: int = 10
    epsilon: float = 0.1
    pool: int | None = 30
    days_per_round: float = 3.0
    seed: int = 0
    model: str = "baseline"
    holdout_share: float = 0.3
    world: WorldConfig = field(default_factory=WorldConfig)

    def __post_init__(self) -> None:
        if self.model not in MODEL_KINDS:
            raise ValueError(f"model must be one of {MODEL_KINDS}; got {self.model!r}")
        if self.rounds < 2:
            raise ValueError(
                f"rounds must be >= 2 (warm-up and one learned round); got {self.rounds}"
            )
        if self.decisions_per_round < 10:
            raise ValueError(f"decisions_per_round must be >= 10; got {self.decisions_per_round}")
        if not 0.0 < self.holdout_share < 1.0:
            raise ValueError(f"holdout_share must be in (0, 1); got {self.holdout_share}")
        if not 0.0 < self.epsilon <= 1.0:
            raise ValueError(
                f"epsilon must be in (0, 1] so that IPS has support; got {self.epsilon}"
            )
