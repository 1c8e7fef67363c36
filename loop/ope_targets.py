"""OPE rows from the propensity log for target policies (a scorer plus an exploration policy),
and for the production policy that logged the window: the policy replay of
``loop.replay.replay_batch``, one cross-fitted outcome model per window for DM and the doubly
robust estimators, the request segments, and the target mass outside the logging policy's
support.

**One outcome model per window.** q̂(x, a, k) is fitted once per log window
(``fit_window_model``), on logged features only: the logit of the logging model's score of item
a (stored with the decision, so it exists for every candidate) and its square, the item's plays
in the log before the window, whether the member had played it before, and a one-hot of the
position k. It is cross-fitted (``ope.reward_model.fit_folds``; a slate's positions share a
fold), so no row's q̂ has seen its own reward. Because no target's scores enter it, a candidate
gets the same q̂ and v̂, hence the same estimate, whichever other policies it is evaluated beside:
the report and the gate agree exactly. The classifier is a logistic regression, gradient-boosted
trees, or the ranker's DCN-v2 network (``fm_core.reward_classifier.RankerRewardModel``, handed
to ``ope`` as a factory by ``reward_model_for``, so ``ope`` never imports torch). v̂ at a row is
Σ_a π_e(a at k | x) q̂(x, a, k) over the candidates the target can put at k; the action space of
a row is the logged item followed by the target's support at that position, never a dense
candidates × rows array unless the target explores over every candidate.

**Support.** For a logging policy whose marginals are known (rebuilt from each decision's logged
policy name, exploration parameters and scores by ``explore.policy_for_record``: greedy,
ε-greedy, random insertion, Plackett-Luce over a small pool), the unsupported mass of a target is
the mean over decisions of (1/K) Σ_k Σ_i π_e(i at k) [π_0(i at k) = 0] (``ope.support``): the
share of the target's slate the logs can say nothing about. With ``max_weight`` the pairs whose
weight π_e / π_0 exceeds it count too: a window of N decisions expects fewer than N / max_weight
logged rows there, too few for an importance-weighted correction to mean anything. Its part of
v̂ (``v_hat_unsupported``) is what DM and every DR estimator switched there take from the outcome
model alone, unchecked by any reward.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from explore import Policy, policy_for_record
from fm_core import Scorer
from loop.replay import PrecomputedScores, as_served, replay_batch
from loop.windows import LoggedWindow
from ope import OpeBatch
from ope.replay import ReplayPolicy, prefix_conditionals
from ope.reward_model import REWARD_MODELS as BUILT_IN_REWARD_MODELS
from ope.reward_model import Classifier, FoldModels, fit_folds
from ope.support import thin

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
    marginals: tuple[np.ndarray, ...] = ()
    """Per logged decision, the target's (K, n) marginals on its candidates (empty where the
    production policy's are not known)."""
    unsupported_positions: float | None = None
    """Per decision on average, the expected number of the target's slate positions outside
    the logging policy's support (``unsupported_mass`` is that number's share of K)."""

    @property
    def model_only(self) -> float | None:
        """Per decision on average, the outcome model's value on the target's unsupported
        positions: what DM and the DR family take from the model alone."""
        if "v_hat_unsupported" not in self.frame:
            return None
        return float(self.frame["v_hat_unsupported"].sum() / self.batch.n_decisions)


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
class _Rows:
    """The window's logged rows (one per decision and position): the decision of each row, the
    logged item's index among the decision's candidates, and the position."""

    decision: np.ndarray
    candidate: np.ndarray
    position: np.ndarray
    candidates: list[np.ndarray]

    @classmethod
    def of(cls, window: LoggedWindow) -> _Rows:
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

    def __init__(self, window: LoggedWindow, rows: _Rows) -> None:
        logged = [np.asarray(s, dtype=np.float64) for s in window.decisions["candidate_scores"]]
        sizes = np.array([c.size for c in logged])
        self.offset = np.concatenate(([0], np.cumsum(sizes)[:-1]))
        flat = np.concatenate(rows.candidates)
        self.logit = _logit(np.concatenate(logged))
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
    rows = _Rows.of(window)
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
    rows = _Rows.of(window)
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


@dataclass(frozen=True)
class _TargetTables:
    """Per logged row, over the row's actions (the logged item first, then the rest of the
    target's support at that position): the target's marginal, the candidate index, and whether
    the logging policy could show it there (True where its marginals are unknown)."""

    target: np.ndarray  # (n_rows, n_actions)
    candidate: np.ndarray  # (n_rows, n_actions), -1 past the row's actions
    supported: np.ndarray  # (n_rows, n_actions)
    unsupported_mass: float | None
    unsupported_positions: float | None


def _target_tables(
    window: LoggedWindow, rows: _Rows, marginals: list[np.ndarray], max_weight: float
) -> _TargetTables:
    """The tables of a target whose (K, n) marginals on each decision's candidates are given;
    a (position, candidate) is outside the support where the logging policy never shows it or
    the target's weight there exceeds ``max_weight`` (``ope.support.thin``)."""
    decisions = window.decisions
    per_row: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    unsupported: list[float] = []
    positions: list[float] = []
    known_support = True
    rows_of = pd.Series(np.arange(rows.decision.size)).groupby(rows.decision).indices
    for d, (m, logged_scores, k, name, params) in enumerate(
        zip(
            marginals,
            decisions["candidate_scores"],
            decisions["k"],
            decisions["policy_name"],
            decisions["exploration"],
            strict=True,
        )
    ):
        logged = None
        if known_support:
            logged = _logged_marginals(name, params, np.asarray(logged_scores), int(k))
            if logged is None:
                known_support = False
            else:
                outside = thin(logged, m, max_weight)
                positions.append(float(np.sum(m * outside)))
                unsupported.append(positions[-1] / m.shape[0])
        for row in rows_of.get(d, ()):
            position, logged_item = int(rows.position[row]), int(rows.candidate[row])
            at_k = m[position] if position < m.shape[0] else np.zeros(m.shape[1])
            others = np.flatnonzero(at_k > 0.0)
            actions = np.concatenate(([logged_item], others[others != logged_item]))
            if logged is None:
                supported = np.ones(actions.size, dtype=bool)
            else:
                supported = ~outside[position][actions]
            per_row.append((at_k[actions], actions, supported))
    target, candidate = _padded([(t, a) for t, a, _ in per_row])
    supported = np.ones(target.shape, dtype=bool)
    for row, (_, _, s) in enumerate(per_row):
        supported[row, : s.size] = s
    known = known_support and bool(unsupported)
    return _TargetTables(
        target=target,
        candidate=candidate,
        supported=supported,
        unsupported_mass=float(np.mean(unsupported)) if known else None,
        unsupported_positions=float(np.mean(positions)) if known else None,
    )


def _padded(per_row: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities, candidates) tables of per-row pairs, zero / −1 past a row's entries."""
    width = max(1, max(c.size for _, c in per_row))
    probability = np.zeros((len(per_row), width))
    candidate = np.full((len(per_row), width), -1, dtype=np.int64)
    for row, (p, c) in enumerate(per_row):
        probability[row, : p.size], candidate[row, : c.size] = p, c
    return probability, candidate


def _cascade_tables(
    rows: _Rows, policies: Sequence[ReplayPolicy], scores: Sequence[np.ndarray]
) -> tuple[np.ndarray, np.ndarray] | None:
    """Per logged row, the policy's conditional choice at the row's position given the logged
    items above it (``ope.replay.prefix_conditionals``), as (probabilities, candidates) tables;
    None where a policy's prefix probabilities are not known (random insertion)."""
    empty = (np.empty(0), np.empty(0, dtype=np.int64))
    per_row: list[tuple[np.ndarray, np.ndarray]] = [empty] * rows.decision.size
    rows_of = pd.Series(np.arange(rows.decision.size)).groupby(rows.decision).indices
    for d, (policy, s) in enumerate(zip(policies, scores, strict=True)):
        mine = rows_of.get(d)
        if mine is None:
            continue
        mine = mine[np.argsort(rows.position[mine])]
        served = as_served(policy, np.asarray(s, dtype=np.float64), mine.size)
        try:
            conditionals = prefix_conditionals(served, s, rows.candidate[mine])
        except ValueError:
            return None
        for row, (candidates, probability) in zip(mine, conditionals, strict=True):
            per_row[row] = (probability, candidates)
    return _padded(per_row)


def _frame(window: LoggedWindow, batch: OpeBatch) -> pd.DataFrame:
    slates = window.slates
    frame = pd.DataFrame(
        {
            "reward": batch.reward,
            "pscore": batch.pscore,
            "target_pscore": batch.target_pscore,
            "decision_id": slates["decision_id"].to_numpy(),
            "slot": batch.slot,
        }
    )
    segments = window.decisions.set_index("decision_id")[list(SEGMENTS)]
    for column in SEGMENTS:
        frame[column] = segments[column].reindex(frame["decision_id"]).to_numpy()
    return frame


def _replayed(
    name: str,
    window: LoggedWindow,
    rows: _Rows,
    batch: OpeBatch,
    marginals: list[np.ndarray],
    model: WindowModel | None,
    max_weight: float = math.inf,
    cascade: Callable[[], tuple[np.ndarray, np.ndarray] | None] | None = None,
) -> ReplayedTarget:
    frame = _frame(window, batch)
    tables = _target_tables(window, rows, marginals, max_weight)
    if model is not None:
        v_hat = model.expected(tables.target, tables.candidate)
        outside = np.where(tables.supported, 0.0, tables.target)
        frame["q_hat"] = model.q_hat
        frame["v_hat"] = v_hat
        frame["v_hat_unsupported"] = model.expected(outside, tables.candidate)
        batch = dataclasses.replace(batch, q_hat=model.q_hat, v_hat=v_hat)
        conditional = None if cascade is None or batch.pscore_cascade is None else cascade()
        if conditional is not None:
            v_hat_cascade = model.expected(*conditional)
            frame["v_hat_cascade"] = v_hat_cascade
            batch = dataclasses.replace(batch, v_hat_cascade=v_hat_cascade)
    logger.info("replayed %s on %d decisions", name, len(window.decisions))
    return ReplayedTarget(
        name=name,
        frame=frame,
        unsupported_mass=tables.unsupported_mass,
        batch=batch,
        marginals=tuple(marginals),
        unsupported_positions=tables.unsupported_positions,
    )


def replay_targets(
    window: LoggedWindow,
    targets: Sequence[TargetPolicy],
    *,
    reward_model: str | None = "logistic",
    model: WindowModel | None = None,
    n_folds: int = 3,
    seed: int = 0,
    max_weight: float = math.inf,
) -> list[ReplayedTarget]:
    """OPE rows for each target on the window's logged decisions (one row per position).

    Columns: reward (played), pscore, target_pscore, decision_id, slot, the segments
    ``surface`` and ``device``, and with an outcome model the cross-fitted q_hat, v_hat and
    v_hat_unsupported (v̂'s part outside the logging policy's support). ``model``: the window's
    outcome model (``fit_window_model``); without it one is fitted with ``reward_model`` (one
    of ``REWARD_MODELS``, or None for none), ``n_folds`` and ``seed``. Either way it is fitted on
    logged features only, so every target of the window gets the same q_hat. ``max_weight``:
    a target weight above it counts as outside the support (``ope.support.thin``).
    """
    rows = _Rows.of(window)
    if model is None and reward_model is not None:
        model = fit_window_model(window, reward_model=reward_model, n_folds=n_folds, seed=seed)
    out: list[ReplayedTarget] = []
    for target in targets:
        scores = target.scorer.score(window.requests, rows.candidates)
        batch = replay_batch(
            window, scorer=PrecomputedScores(target.scorer, scores), policy=target.policy
        )
        marginals = [
            target.policy.marginals(np.asarray(s, dtype=np.float64), int(k))
            for s, k in zip(scores, window.decisions["k"], strict=True)
        ]
        policies = [target.policy] * len(scores)
        out.append(
            _replayed(
                target.name, window, rows, batch, marginals, model, max_weight,
                cascade=functools.partial(_cascade_tables, rows, policies, scores),
            )
        )  # fmt: skip
    return out


PRODUCTION = "production"
"""The name of the policy that logged the window, as ``replay_logged`` returns it."""


def replay_logged(window: LoggedWindow, *, model: WindowModel | None = None) -> ReplayedTarget:
    """The OPE rows of the production policy: the policy that logged the window, each decision
    as it was served (its logged scores and exploration), so every weight is 1 and its estimates
    are on-policy. v̂ needs the logging policy's marginals; where a decision's are not known
    (VW, a large Plackett-Luce pool) the rows carry no v̂."""
    rows = _Rows.of(window)
    slates = window.slates
    if slates["propensity"].isna().any():
        raise ValueError("the window holds decisions without exact marginal propensities")
    propensity = slates["propensity"].to_numpy(dtype=np.float64)
    prefix = slates["prefix_propensity"].to_numpy(dtype=np.float64)
    last = slates.groupby("decision_id", sort=False)["position"].transform("max")
    whole = pd.Series(prefix).where((slates["position"] == last).to_numpy())
    slate_pscore = whole.groupby(slates["decision_id"].to_numpy()).transform("max").to_numpy()
    batch = OpeBatch.from_arrays(
        reward=slates["played"].to_numpy(dtype=np.float64),
        pscore=propensity,
        target_pscore=propensity,
        decision_id=slates["decision_id"].to_numpy(),
        slot=rows.position,
        slate_pscores={
            "pscore_slate": slate_pscore,
            "target_pscore_slate": slate_pscore,
            "pscore_cascade": prefix,
            "target_pscore_cascade": prefix,
        },
    )
    marginals = []
    decisions = window.decisions
    scores = [np.asarray(s, dtype=np.float64) for s in decisions["candidate_scores"]]
    for s, k, name, params in zip(
        scores, decisions["k"], decisions["policy_name"], decisions["exploration"], strict=True
    ):
        logged = _logged_marginals(name, params, s, int(k))
        if logged is None:
            model = None  # no v̂ without the logging policy's marginals
            marginals = []
            break
        marginals.append(logged)
    if not marginals:
        frame = _frame(window, batch)
        return ReplayedTarget(name=PRODUCTION, frame=frame, unsupported_mass=None, batch=batch)
    policies = [
        policy_for_record(name, dict(params))
        for name, params in zip(decisions["policy_name"], decisions["exploration"], strict=True)
    ]
    cascade = functools.partial(_cascade_tables, rows, policies, scores)
    return _replayed(PRODUCTION, window, rows, batch, marginals, model, cascade=cascade)
