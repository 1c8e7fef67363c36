"""Calibrated exploration: per request, the most exploration an ``ExplorationBudget`` allows.

``CalibratedSlate`` wraps a policy family (ε-greedy, top-K random insertion or Plackett-Luce) and,
for each request, picks its exploration parameters from the scores (see :mod:`explore.budget`),
decides with them, and returns them on the slate (``Slate.exploration``) so that the decision
record logs what was actually used. The choice is a deterministic function of the scores and K,
so ``slate_probability`` and ``marginals`` replay it exactly, and so does an audit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from explore.budget import Calibration, ExplorationBudget, calibrate, plackett_luce_kernels
from explore.plackett_luce import PlackettLuceSlate
from explore.policy import Policy, validate_scores
from explore.slate import Slate

# The version of each family's calibration, logged with its decisions. Plackett-Luce "3": the
# temperature is found by a root search to within 0.1% in T (``explore.pl_bound``) instead of a
# twice-refined grid (1.5%, "2"); it can be up to 1.5% warmer than "2" chose, never beyond the
# budget. "2" summed the grid's bounds in one unit per temperature where that was safe; "1"
# computed the grid's ends with numpy. Replays read the logged temperature, so every version
# audits the same way.
CALIBRATION_VERSIONS = {"plackett_luce": "3"}


@dataclass(frozen=True, kw_only=True)
class CalibratedSlate:
    """``base``: the family, with its cap on the pool and its exploring positions; its own
    exploration parameter is replaced per request. ``budget``: the budget and the floor."""

    base: Policy
    budget: ExplorationBudget = field(default_factory=ExplorationBudget)
    name: str = ""
    version: str = ""

    def __post_init__(self) -> None:
        if not self.name:
            object.__setattr__(self, "name", f"calibrated_{self.base.name}")
        if not self.version:
            object.__setattr__(self, "version", CALIBRATION_VERSIONS.get(self.base.name, "1"))
        if isinstance(self.base, PlackettLuceSlate):
            plackett_luce_kernels()  # load the compiled search now, not on the first request

    def params(self) -> dict[str, Any]:
        return {"base": self.base.name, **self.base.params(), **self.budget.params()}

    def calibrate(self, scores: np.ndarray, k: int) -> Calibration:
        """The policy and parameters this request gets."""
        scores = validate_scores(scores, k)
        return calibrate(self.base, scores, k, self.budget)

    def decide(self, scores: np.ndarray, k: int, rng: np.random.Generator) -> Slate:
        scores = validate_scores(scores, k)
        chosen = calibrate(self.base, scores, k, self.budget)
        exploration = chosen.exploration(self.budget)
        decide_ranked = getattr(chosen.policy, "decide_ranked", None)
        if chosen.ranked is None or decide_ranked is None:
            return chosen.policy.decide(scores, k, rng).with_exploration(exploration)
        # The calibration ranked the candidates already.
        return decide_ranked(scores, chosen.ranked, min(k, scores.size), rng, exploration)

    def slate_probability(self, scores: np.ndarray, slate: np.ndarray) -> float:
        k = max(np.asarray(slate).size, 1)
        return self.calibrate(scores, k).policy.slate_probability(scores, slate)

    def marginals(self, scores: np.ndarray, k: int) -> np.ndarray:
        return self.calibrate(scores, k).policy.marginals(scores, k)
