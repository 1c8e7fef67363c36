"""The settings of ``loopbreak tune search-weight`` (the α grid, the simulated run, the run on a
real log), kept apart from the tuning itself (:mod:`loop.tune`, which imports pandas, the store,
the simulator and the scorer) so that ``loopbreak --help`` shows their defaults without those."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from sim.config import WorldConfig

if TYPE_CHECKING:
    from proplog.training_table import TrainingTableConfig

DEFAULT_ALPHAS: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)
"""The default grid of α: geometric, from ignoring search plays to letting them dominate."""


def check_alphas(alphas: Sequence[float]) -> None:
    """Refuse an empty grid, or one with a value that is not a finite number >= 0."""
    if not alphas:
        raise ValueError("alphas must hold at least one value; got none")
    for a in alphas:
        if not (isinstance(a, int | float) and math.isfinite(a) and a >= 0):
            raise ValueError(f"alphas must be finite numbers >= 0; got {a!r}")


def _default_table() -> TrainingTableConfig:
    from proplog.training_table import TrainingTableConfig  # pandas: only when a run is made

    return TrainingTableConfig()


@dataclass(frozen=True, kw_only=True)
class SimTuneConfig:
    """The simulated run behind the tuning. The defaults take well under a minute on 2 cores."""

    alphas: tuple[float, ...] = DEFAULT_ALPHAS
    decisions: int = 2000
    heldout: int = 600
    days: float = 6.0
    heldout_days: float = 2.0
    k: int = 10
    epsilon: float = 1.0
    seed: int = 0
    table: TrainingTableConfig = field(default_factory=_default_table)
    world: WorldConfig = field(default_factory=WorldConfig)

    def __post_init__(self) -> None:
        check_alphas(self.alphas)
        for name in ("decisions", "heldout", "k"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}")
        for name in ("days", "heldout_days"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0; got {getattr(self, name)}")
        if not 0.0 < self.epsilon <= 1.0:
            raise ValueError(f"epsilon must be in (0, 1] so that every item is logged; got "
                             f"{self.epsilon}")  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class LogTuneConfig:
    """The tuning on a real log: the log's URL, the model whose catalog the α's models score,
    the share of the latest decisions held out, and the evaluated ε-greedy policy."""

    database: str
    catalog_from: Path | str
    alphas: tuple[float, ...] = DEFAULT_ALPHAS
    holdout_share: float = 0.2
    epsilon: float = 0.1
    pool: int | None = 30
