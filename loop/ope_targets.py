"""OPE rows from the propensity log for target policies (a scorer plus an exploration policy):
the policy replay of ``loop.replay.replay_batch``, a cross-fitted reward model for DM and the
doubly robust estimators, the request segments, and the target mass outside the logging
policy's support.

**Reward model.** One row per logged (decision, position). q̂(x, a, k) is a cross-fitted
classifier (``ope.reward_model.cross_fit``) on the logits of the logging model's score of item a
(stored with the decision, so it exists for every candidate) and of every replayed model's score
of a, and a one-hot of the position k: a logistic regression, gradient-boosted trees, or the
ranker's DCN-v2 network (``fm_core.reward_classifier.RankerRewardModel``, handed to ``ope`` as a
factory by ``reward_model_for``, so ``ope`` never imports torch). All three see the same
features, so their estimates compare like for like. The features are the same whichever target
is replayed, so every target of one replay gets the same q̂ (the gate's paired DR lift needs
that). v̂ at a row is Σ_a π_e(a at k | x) q̂(x, a, k) over the
candidates the target can put at k, so the action space of a row is the logged item followed by
the target's support at that position; it is never a dense candidates × rows array unless the
target explores over every candidate.

**Support.** For a logging policy whose marginals are known (rebuilt from each decision's logged
policy name, exploration parameters and scores by ``explore.policy_for_record``: greedy,
ε-greedy, random insertion, Plackett-Luce over a small pool), the unsupported mass of a target is
the mean over decisions of (1/K) Σ_k Σ_i π_e(i at k) [π_0(i at k) = 0] (``ope.support``): the
share of the target's slate the logs can say nothing about.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from explore import Policy, policy_for_record
from fm_core import Scorer
from loop.replay import PrecomputedScores, replay_batch
from loop.windows import LoggedWindow
from ope import OpeBatch
from ope.reward_model import REWARD_MODELS as BUILT_IN_REWARD_MODELS
from ope.reward_model import Classifier, cross_fit
from ope.support import unsupported_mass

logger = logging.getLogger(__name__)

SEGMENTS = ("surface", "device")
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


@dataclass(frozen=True)
class TargetPolicy:
    """A policy to evaluate: a name (its model version), its scorer and its exploration."""

    name: str
    scorer: Scorer
    policy: Policy


@dataclass(frozen=True)
class ReplayedTarget:
    """OPE rows for one target: ``frame`` in the input contract, plus the request segments;
    ``batch``, the same rows with every slate column of the replay (and q̂, v̂ with a reward
    model), for the slate and model-based estimators at once."""

    name: str
    frame: pd.DataFrame
    unsupported_mass: float | None
    batch: OpeBatch


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1.0 - 1e-6)
    return np.log(p / (1.0 - p))


def _logged_marginals(
    name: str, params: dict[str, object], scores: np.ndarray, k: int
) -> np.ndarray | None:
    """The logging policy's exact (K, n) marginals for one logged decision, rebuilt from its
    record, or None where that policy has none (Plackett-Luce over a large pool, VW)."""
    try:
        policy = policy_for_record(name, dict(params))
        return policy.marginals(scores, k)
    except (ValueError, NotImplementedError):
        return None


@dataclass(frozen=True)
class _TargetTables:
    """Per logged row, over the row's actions (the logged item first, then the rest of the
    target's support at that position): the target's marginal and the candidate index."""

    target: np.ndarray  # (n_rows, n_actions)
    candidate: np.ndarray  # (n_rows, n_actions), -1 past the row's actions
    unsupported_mass: float | None


def _target_tables(
    window: LoggedWindow,
    policy: Policy,
    scores: list[np.ndarray],
    row_decision: np.ndarray,
    row_candidate: np.ndarray,
    row_position: np.ndarray,
) -> _TargetTables:
    decisions = window.decisions
    per_row_target: list[np.ndarray] = []
    per_row_action: list[np.ndarray] = []
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
        marginals = policy.marginals(np.asarray(s, dtype=np.float64), int(k))  # (K, n)
        if known_support:
            logged = _logged_marginals(name, params, np.asarray(logged_scores), int(k))
            if logged is None:
                known_support = False
            else:
                unsupported.append(unsupported_mass(logged, marginals) / marginals.shape[0])
        for row in rows_of.get(d, ()):
            position, logged_item = int(row_position[row]), int(row_candidate[row])
            at_k = marginals[position] if position < marginals.shape[0] else np.zeros(s.size)
            others = np.flatnonzero(at_k > 0.0)
            actions = np.concatenate(([logged_item], others[others != logged_item]))
            per_row_target.append(at_k[actions])
            per_row_action.append(actions)
    width = max(a.size for a in per_row_target)
    target = np.zeros((len(per_row_target), width))
    candidate = np.full((len(per_row_target), width), -1, dtype=np.int64)
    for row, (t, a) in enumerate(zip(per_row_target, per_row_action, strict=True)):
        target[row, : t.size] = t
        candidate[row, : a.size] = a
    mass = float(np.mean(unsupported)) if known_support and unsupported else None
    return _TargetTables(target=target, candidate=candidate, unsupported_mass=mass)


class _ScoreFeatures:
    """Reward-model features of (logged row, candidate): the logit of the logging model's score
    and of every target model's score of that candidate, and the row's position one-hot."""

    def __init__(
        self,
        logged: list[np.ndarray],
        targets: list[list[np.ndarray]],
        row_decision: np.ndarray,
        row_position: np.ndarray,
    ) -> None:
        sizes = np.array([c.size for c in logged])
        self.offset = np.concatenate(([0], np.cumsum(sizes)[:-1]))
        self.logits = np.column_stack(
            [_logit(np.concatenate(logged))]
            + [_logit(np.concatenate([np.asarray(s) for s in t])) for t in targets]
        )  # (Σ candidates, 1 + n_targets)
        self.row_decision = row_decision
        self.onehot = np.eye(int(row_position.max()) + 1)[row_position]

    def design(self, rows: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        flat = self.offset[self.row_decision[rows]] + candidates
        return np.column_stack([self.logits[flat], self.onehot[rows]])


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
    ``surface`` and ``device``, and with ``reward_model`` (one of ``REWARD_MODELS``:
    "logistic", "gbdt" or "ranker") the cross-fitted q_hat and v_hat. The reward model's
    features are the logging model's and every target model's scores, so all targets of one
    call share the same q_hat.
    """
    model = None if reward_model is None else reward_model_for(reward_model, seed)
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
    all_scores = [target.scorer.score(window.requests, candidates) for target in targets]
    features = _ScoreFeatures(
        [np.asarray(s, dtype=np.float64) for s in window.decisions["candidate_scores"]],
        all_scores,
        row_decision,
        row_position,
    )
    out: list[ReplayedTarget] = []
    for target, scores in zip(targets, all_scores, strict=True):
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
        if model is not None:
            table = tables.candidate

            def design(rows: np.ndarray, actions: np.ndarray) -> np.ndarray:
                return features.design(rows, table[rows, actions])  # noqa: B023

            fit = cross_fit(
                design,
                reward=frame["reward"].to_numpy(),
                action=np.zeros(len(frame), dtype=np.int64),  # the logged item is action 0
                target=tables.target,
                model=model,
                n_folds=n_folds,
                seed=seed,
                groups=row_decision,  # a slate's positions share a fold
            )
            frame["q_hat"] = fit.q_hat
            frame["v_hat"] = fit.v_hat
            batch = dataclasses.replace(batch, q_hat=fit.q_hat, v_hat=fit.v_hat)
        logger.info("replayed %s on %d decisions", target.name, len(window.decisions))
        out.append(
            ReplayedTarget(
                name=target.name,
                frame=frame,
                unsupported_mass=tables.unsupported_mass,
                batch=batch,
            )
        )
    return out
