"""OPE rows from the propensity log for target policies (a scorer plus an exploration policy):
the policy replay of ``api.logs.replay_batch``, a cross-fitted reward model for DM and the
doubly robust estimators, the request segments, and the target mass outside the logging
policy's support.

**Reward model.** One row per logged (decision, position). q̂(x, a, k) is a logistic regression
(``ope.reward_model.cross_fit``) on the logit of the logging model's score of item a (stored with
the decision, so it exists for every candidate) and a one-hot of the position k. Its features do
not depend on the target, so every target replayed on the same window gets the same q̂ (the
gate's paired DR lift needs that). v̂ at a row is Σ_a π_e(a at k | x) q̂(x, a, k) over the
candidates the target can put at k, so the action space of a row is the logged item followed by
the target's support at that position; it is never a dense candidates × rows array unless the
target explores over every candidate.

**Support.** For a logging policy whose marginals are known (``epsilon_greedy`` and
``uniform``, rebuilt from the logged parameters and scores), the unsupported mass of a target is
the mean over decisions of (1/K) Σ_k Σ_i π_e(i at k) [π_0(i at k) = 0]: the share of the target's
slate the logs can say nothing about.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from api.logs import LoggedWindow, replay_batch
from explore import EpsilonGreedySlate
from fm_core import Scorer, ScoreRequest
from ope.reward_model import cross_fit

logger = logging.getLogger(__name__)

SEGMENTS = ("surface", "device")
LOGGING_POLICIES_WITH_MARGINALS = ("epsilon_greedy", "uniform")


@dataclass(frozen=True)
class TargetPolicy:
    """A policy to evaluate: a name (its model version), its scorer and its exploration."""

    name: str
    scorer: Scorer
    policy: EpsilonGreedySlate


@dataclass(frozen=True)
class ReplayedTarget:
    """OPE rows for one target in the input contract, plus the request segments."""

    name: str
    frame: pd.DataFrame
    unsupported_mass: float | None


class PrecomputedScores:
    """Scores computed once, handed to ``replay_batch`` as its scorer (same requests only)."""

    def __init__(self, scorer: Scorer, scores: list[np.ndarray]) -> None:
        self.model_version = scorer.model_version
        self.catalog = scorer.catalog
        self._scores = scores

    def score(
        self, requests: Sequence[ScoreRequest], candidates: Sequence[np.ndarray]
    ) -> list[np.ndarray]:
        if len(requests) != len(self._scores):
            raise ValueError(
                f"scores were computed for {len(self._scores)} requests; got {len(requests)}"
            )
        return self._scores


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1.0 - 1e-6)
    return np.log(p / (1.0 - p))


def _logging_policy(name: str, params: dict[str, object]) -> EpsilonGreedySlate | None:
    if name not in LOGGING_POLICIES_WITH_MARGINALS:
        return None
    return EpsilonGreedySlate(epsilon=float(params["epsilon"]), pool=params.get("pool"))  # type: ignore[arg-type]


@dataclass(frozen=True)
class _TargetTables:
    """Per logged row: the target's marginal and the logged score over the row's actions
    (the logged item first, then the rest of the target's support at that position)."""

    target: np.ndarray  # (n_rows, n_actions)
    logged_score: np.ndarray  # (n_rows, n_actions)
    unsupported_mass: float | None


def _target_tables(
    window: LoggedWindow,
    policy: EpsilonGreedySlate,
    scores: list[np.ndarray],
    row_decision: np.ndarray,
    row_candidate: np.ndarray,
    row_position: np.ndarray,
) -> _TargetTables:
    decisions = window.decisions
    per_row_target: list[np.ndarray] = []
    per_row_score: list[np.ndarray] = []
    unsupported: list[float] = []
    known_support = True
    rows_of = pd.Series(np.arange(row_decision.size)).groupby(row_decision).indices
    for d, (s, logged_scores, k, name, params) in enumerate(
        zip(
            scores,
            decisions["candidate_scores"],
            decisions["k"],
            decisions["policy_name"],
            decisions["exploration"],
            strict=True,
        )
    ):
        logged_scores = np.asarray(logged_scores, dtype=np.float64)
        marginals = policy.marginals(np.asarray(s, dtype=np.float64), int(k))  # (K, n)
        logging_policy = _logging_policy(name, params)
        if logging_policy is None:
            known_support = False
        elif known_support:
            logged = logging_policy.marginals(logged_scores, int(k))
            outside = marginals[: logged.shape[0]] * (logged[: marginals.shape[0]] == 0.0)
            unsupported.append(float(outside.sum()) / marginals.shape[0])
        for row in rows_of.get(d, ()):
            position, logged_item = int(row_position[row]), int(row_candidate[row])
            at_k = marginals[position] if position < marginals.shape[0] else np.zeros(s.size)
            others = np.flatnonzero(at_k > 0.0)
            others = others[others != logged_item]
            actions = np.concatenate(([logged_item], others))
            per_row_target.append(at_k[actions])
            per_row_score.append(logged_scores[actions])
    width = max(a.size for a in per_row_target)
    target = np.zeros((len(per_row_target), width))
    logged_score = np.full((len(per_row_target), width), 0.5)
    for row, (t, ls) in enumerate(zip(per_row_target, per_row_score, strict=True)):
        target[row, : t.size] = t
        logged_score[row, : ls.size] = ls
    mass = float(np.mean(unsupported)) if known_support and unsupported else None
    return _TargetTables(target=target, logged_score=logged_score, unsupported_mass=mass)


def replay_targets(
    window: LoggedWindow,
    targets: Sequence[TargetPolicy],
    *,
    reward_model: str | None = "logistic",
    n_folds: int = 3,
    seed: int = 0,
) -> list[ReplayedTarget]:
    """OPE rows for each target on the window's logged decisions (one row per position).

    Columns: reward (played), pscore, target_pscore, decision_id, slot, the segments
    ``surface`` and ``device``, and with ``reward_model`` ("logistic" or "gbdt") the
    cross-fitted q_hat and v_hat.
    """
    if window.decisions.empty:
        raise ValueError("the log window holds no decisions")
    slates = window.slates
    index = pd.Index(window.decisions["decision_id"])
    row_decision = index.get_indexer(slates["decision_id"])
    candidates = [np.asarray(c, dtype=np.int64) for c in window.decisions["candidate_ids"]]
    items = slates["item_id"].to_numpy(dtype=np.int64)
    row_candidate = np.array(
        [
            int(np.flatnonzero(candidates[d] == item)[0])
            for d, item in zip(row_decision, items, strict=True)
        ]
    )
    row_position = slates["position"].to_numpy(dtype=np.int64)
    segments = window.decisions.set_index("decision_id")[list(SEGMENTS)]
    out: list[ReplayedTarget] = []
    for target in targets:
        scores = target.scorer.score(window.requests, candidates)
        batch = replay_batch(
            window, scorer=PrecomputedScores(target.scorer, scores), policy=target.policy
        )
        frame = pd.DataFrame(
            {
                "reward": batch.reward,
                "pscore": batch.pscore,
                "target_pscore": batch.target_pscore,
                "decision_id": slates["decision_id"].to_numpy(),
                "slot": batch.slot,
            }
        )
        for column in SEGMENTS:
            frame[column] = segments[column].reindex(frame["decision_id"]).to_numpy()
        tables = _target_tables(
            window, target.policy, scores, row_decision, row_candidate, row_position
        )
        if reward_model is not None:
            n_positions = int(row_position.max()) + 1
            onehot = np.eye(n_positions)[row_position]
            logit_score = _logit(tables.logged_score)

            def design(rows: np.ndarray, actions: np.ndarray) -> np.ndarray:
                return np.column_stack([logit_score[rows, actions], onehot[rows]])  # noqa: B023

            fit = cross_fit(
                design,
                reward=frame["reward"].to_numpy(),
                action=np.zeros(len(frame), dtype=np.int64),  # the logged item is action 0
                target=tables.target,
                model=reward_model,
                n_folds=n_folds,
                seed=seed,
            )
            frame["q_hat"] = fit.q_hat
            frame["v_hat"] = fit.v_hat
        logger.info("replayed %s on %d decisions", target.name, len(window.decisions))
        out.append(
            ReplayedTarget(name=target.name, frame=frame, unsupported_mass=tables.unsupported_mass)
        )
    return out
