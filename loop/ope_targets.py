"""OPE rows from the propensity log for target policies (a scorer plus an exploration policy),
and for the production policy that logged the window: the policy replay of
``loop.replay.replay_batch``, one cross-fitted outcome model per window for DM and the doubly
robust estimators, the request segments, and the target mass outside the logging policy's
support.

**One outcome model per window** (``loop.ope_outcome``): every target of a window, and
production, share its q̂, so a candidate's DM and DR do not depend on what it is compared with.

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
from loop.ope_outcome import (
    REWARD_MODELS,
    LoggedRows,
    WindowModel,
    fit_window_model,
    reward_model_for,
)
from loop.replay import PrecomputedScores, as_served, replay_batch
from loop.windows import LoggedWindow
from ope import OpeBatch
from ope.replay import ReplayPolicy, prefix_conditionals
from ope.support import thin

logger = logging.getLogger(__name__)

SEGMENTS = ("surface", "device")
__all__ = [
    "PRODUCTION",
    "REWARD_MODELS",
    "SEGMENTS",
    "ReplayedTarget",
    "TargetPolicy",
    "WindowModel",
    "fit_window_model",
    "replay_logged",
    "replay_targets",
    "reward_model_for",
]


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
    target's support at that position): the target's marginal, the candidate index, and whether
    the logging policy could show it there (True where its marginals are unknown)."""

    target: np.ndarray  # (n_rows, n_actions)
    candidate: np.ndarray  # (n_rows, n_actions), -1 past the row's actions
    supported: np.ndarray  # (n_rows, n_actions)
    unsupported_mass: float | None
    unsupported_positions: float | None


def _window_logged_marginals(window: LoggedWindow) -> list[np.ndarray] | None:
    """Per logged decision, the logging policy's exact (K, n) marginals, rebuilt from its
    record; None when any decision's are not known (then no support can be checked)."""
    out = []
    decisions = window.decisions
    for scores, k, name, params in zip(
        decisions["candidate_scores"], decisions["k"], decisions["policy_name"],
        decisions["exploration"], strict=True,
    ):  # fmt: skip
        logged = _logged_marginals(name, params, np.asarray(scores, dtype=np.float64), int(k))
        if logged is None:
            return None
        out.append(logged)
    return out


def _target_tables(
    rows: LoggedRows,
    marginals: list[np.ndarray],
    max_weight: float,
    logged_marginals: list[np.ndarray] | None,
) -> _TargetTables:
    """The tables of a target whose (K, n) marginals on each decision's candidates are given;
    a (position, candidate) is outside the support where the logging policy (its marginals
    ``logged_marginals``, None: unknown) never shows it or the target's weight there exceeds
    ``max_weight`` (``ope.support.thin``)."""
    per_row: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    unsupported: list[float] = []
    positions: list[float] = []
    rows_of = pd.Series(np.arange(rows.decision.size)).groupby(rows.decision).indices
    for d, m in enumerate(marginals):
        outside = None
        if logged_marginals is not None:
            outside = thin(logged_marginals[d], m, max_weight)
            positions.append(float(np.sum(m * outside)))
            unsupported.append(positions[-1] / m.shape[0])
        for row in rows_of.get(d, ()):
            position, logged_item = int(rows.position[row]), int(rows.candidate[row])
            at_k = m[position] if position < m.shape[0] else np.zeros(m.shape[1])
            others = np.flatnonzero(at_k > 0.0)
            actions = np.concatenate(([logged_item], others[others != logged_item]))
            if outside is None:
                supported = np.ones(actions.size, dtype=bool)
            else:
                supported = ~outside[position][actions]
            per_row.append((at_k[actions], actions, supported))
    target, candidate = _padded([(t, a) for t, a, _ in per_row])
    supported = np.ones(target.shape, dtype=bool)
    for row, (_, _, s) in enumerate(per_row):
        supported[row, : s.size] = s
    known = logged_marginals is not None and bool(unsupported)
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
    rows: LoggedRows, policies: Sequence[ReplayPolicy], scores: Sequence[np.ndarray]
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
    rows: LoggedRows,
    batch: OpeBatch,
    marginals: list[np.ndarray],
    model: WindowModel | None,
    logged_marginals: list[np.ndarray] | None,
    max_weight: float = math.inf,
    cascade: Callable[[], tuple[np.ndarray, np.ndarray] | None] | None = None,
) -> ReplayedTarget:
    frame = _frame(window, batch)
    tables = _target_tables(rows, marginals, max_weight, logged_marginals)
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
    rows = LoggedRows.of(window)
    if model is None and reward_model is not None:
        model = fit_window_model(window, reward_model=reward_model, n_folds=n_folds, seed=seed)
    logged = _window_logged_marginals(window)  # the same for every target
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
                target.name, window, rows, batch, marginals, model, logged, max_weight,
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
    rows = LoggedRows.of(window)
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
    marginals = _window_logged_marginals(window)
    if marginals is None:  # no v̂ without the logging policy's marginals
        frame = _frame(window, batch)
        return ReplayedTarget(name=PRODUCTION, frame=frame, unsupported_mass=None, batch=batch)
    decisions = window.decisions
    scores = [np.asarray(s, dtype=np.float64) for s in decisions["candidate_scores"]]
    policies = [
        policy_for_record(name, dict(params))
        for name, params in zip(decisions["policy_name"], decisions["exploration"], strict=True)
    ]
    cascade = functools.partial(_cascade_tables, rows, policies, scores)
    return _replayed(PRODUCTION, window, rows, batch, marginals, model, marginals, cascade=cascade)
