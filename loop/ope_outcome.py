"""The outcome model of one log window, for DM and the doubly robust estimators.

**One outcome model per window.** q̂(x, a, k) is fitted once per log window
(``fit_window_model``), on logged features only: the logit of the logging model's score of item
a (stored with the decision, so it exists for every candidate) and its square, the item's plays
in the log before the window, whether the member had played it before, and the position (first
slot or not, and the log of the rank). It is cross-fitted (``ope.reward_model.fit_folds``; a
slate's positions share a fold), so no row's q̂ has seen its own reward, and it also learns from
the log before the window when given (a few hundred decisions hold too few plays to learn the
position curve alone). Because no target's scores enter it, a candidate gets the same q̂ and v̂,
hence the same estimate, whichever other policies it is evaluated beside: the report and the
gate agree exactly. The classifier is a logistic regression, gradient-boosted trees, or the
ranker's DCN-v2 network (``fm_core.reward_classifier.RankerRewardModel``, handed to ``ope`` as a
factory by ``reward_model_for``, so ``ope`` never imports torch).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from loop.windows import LoggedWindow
from ope.reward_model import REWARD_MODELS as BUILT_IN_REWARD_MODELS
from ope.reward_model import Classifier, FoldModels, fit_folds

REWARD_MODELS = (*BUILT_IN_REWARD_MODELS, "ranker")


def reward_model_for(name: str, seed: int = 0) -> str | Callable[[], Classifier]:
    """What ``cross_fit`` takes for a reward model's name: ope's built-ins ("logistic", "gbdt")
    by name, and "ranker" as a factory of fm_core's ``RankerRewardModel`` seeded with ``seed``
    (torch is imported only when the ranker is chosen)."""
    if name == "ranker":
        from fm_core.reward_classifier import RankerRewardModel

        return functools.partial(RankerRewardModel, seed=seed)
    if name in BUILT_IN_REWARD_MODELS:
        return name
    raise ValueError(f"reward_model must be one of {', '.join(REWARD_MODELS)}; got {name!r}")


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1.0 - 1e-6)
    return np.log(p / (1.0 - p))


@dataclass(frozen=True)
class LoggedRows:
    """The window's logged rows (one per decision and position): the decision of each row, the
    logged item's index among the decision's candidates, and the position."""

    decision: np.ndarray
    candidate: np.ndarray
    position: np.ndarray
    candidates: list[np.ndarray]

    @classmethod
    def of(cls, window: LoggedWindow) -> LoggedRows:
        if window.decisions.empty:
            raise ValueError("the log window holds no decisions")
        slates = window.slates
        index = pd.Index(window.decisions["decision_id"])
        decision = index.get_indexer(slates["decision_id"])
        candidates = [np.asarray(c, dtype=np.int64) for c in window.decisions["candidate_ids"]]
        items = slates["item_id"].to_numpy(dtype=np.int64)
        candidate = np.array(
            [
                int(np.flatnonzero(candidates[d] == item)[0])
                for d, item in zip(decision, items, strict=True)
            ],
            dtype=np.int64,
        )
        position = slates["position"].to_numpy(dtype=np.int64)
        return cls(decision=decision, candidate=candidate, position=position, candidates=candidates)


class _LoggedFeatures:
    """Outcome-model features of (logged row, candidate), from the log alone: the logit of the
    logging model's score of that candidate and its square; the candidate's standardized
    log(1 + plays) in the log before the window's first decision (what any model trained before
    the window could know of it); whether the member had played it before the decision (their
    point-in-time history); and the row's position one-hot."""

    def __init__(self, window: LoggedWindow, rows: LoggedRows) -> None:
        logged = [np.asarray(s, dtype=np.float64) for s in window.decisions["candidate_scores"]]
        sizes = np.array([c.size for c in logged])
        self.offset = np.concatenate(([0], np.cumsum(sizes)[:-1]))
        flat = np.concatenate(rows.candidates)
        self.logit = logit(np.concatenate(logged))
        self.popularity = _standardized(np.log1p(_plays_before(window, flat)))
        self.seen = np.concatenate(
            [
                np.isin(candidates, request.history.plays()).astype(np.float64)
                for candidates, request in zip(rows.candidates, window.requests, strict=True)
            ]
        )
        self.row_decision = rows.decision
        self.position = np.column_stack([rows.position == 0, np.log1p(rows.position)]).astype(
            np.float64
        )

    def design(self, rows: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        flat = self.offset[self.row_decision[rows]] + candidates
        z = self.logit[flat]
        return np.column_stack(
            [z, z * z, self.popularity[flat], self.seen[flat], self.position[rows]]
        )


def _plays_before(window: LoggedWindow, items: np.ndarray) -> np.ndarray:
    """Per entry of ``items``, its plays in the log before the window's first decision."""
    events = window.events
    start = window.decisions["created_at"].min()
    plays = events[(events["kind"] == "play") & (events["created_at"] < start)]
    ids = plays["item_id"].to_numpy(dtype=np.int64)
    if ids.size == 0:
        return np.zeros(items.size)
    counts = np.bincount(ids, minlength=int(max(ids.max(), items.max())) + 1)
    return counts[items].astype(np.float64)


def _standardized(values: np.ndarray) -> np.ndarray:
    spread = values.std()
    return (values - values.mean()) / spread if spread > 0 else np.zeros_like(values)


@dataclass(frozen=True)
class WindowModel:
    """The outcome model of one log window: q̂ of any candidate at any logged row (its
    position), each row scored by the fold model that never saw it."""

    name: str
    folds: FoldModels

    @property
    def q_hat(self) -> np.ndarray:
        """(n_rows,) q̂ at each row's logged item and position."""
        return self.folds.q_hat

    def expected(self, target: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        """(n_rows,) Σ_a target[i, a] q̂(x_i, candidates[i, a], k_i)."""
        return self.folds.expected(target, candidates)


def _logged_rows(window: LoggedWindow) -> tuple[np.ndarray, np.ndarray]:
    """(features, rewards) of every logged row of ``window`` at its logged item."""
    rows = LoggedRows.of(window)
    features = _LoggedFeatures(window, rows)
    design = features.design(np.arange(rows.decision.size), rows.candidate)
    return design, window.slates["played"].to_numpy(dtype=np.float64)


def fit_window_model(
    window: LoggedWindow,
    *,
    reward_model: str = "logistic",
    n_folds: int = 3,
    seed: int = 0,
    history: LoggedWindow | None = None,
) -> WindowModel:
    """Cross-fit the window's outcome model (one of ``REWARD_MODELS``) on logged features only
    (see the module docstring); a slate's positions share a fold. ``history``: logged decisions
    before the window that every fold also learns from (a window of a few hundred decisions
    holds too few plays to learn the position curve and the items alone; an earlier log's
    rewards are not the window's, so they cannot leak into its estimate)."""
    model = reward_model_for(reward_model, seed)
    rows = LoggedRows.of(window)
    features = _LoggedFeatures(window, rows)
    extra = None if history is None or history.decisions.empty else _logged_rows(history)
    folds = fit_folds(
        features.design,
        reward=window.slates["played"].to_numpy(dtype=np.float64),
        action=rows.candidate,
        model=model,
        n_folds=n_folds,
        seed=seed,
        groups=rows.decision,
        extra=extra,
    )
    return WindowModel(name=reward_model, folds=folds)
