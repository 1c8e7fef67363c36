"""Policy replay on logged candidates: a target (a scorer and an exploration policy) re-scores
each logged decision's candidates, and its exact marginal, item, prefix and whole-slate
probabilities of the logged slate become OPE rows beside the logged propensities.

The per-slate probabilities come from ``ope.replay.replay_slate`` (the policy's own
``marginals``/``slate_probability``); this module joins them with the log window. OPE targets
with a reward model (q̂, v̂) build on it in ``loop.ope_targets``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fm_core import Scorer, ScoreRequest
from loop.windows import LoggedWindow
from ope import OpeBatch
from ope.replay import HasMarginals, ReplayPolicy, replay_slate
from ope.support import support_diagnostics


def as_served(policy: ReplayPolicy, scores: np.ndarray, k: int) -> ReplayPolicy:
    """The policy that serves a K-slate for these scores: a calibrated policy (one with
    ``calibrate``, ``explore.CalibratedSlate``) chooses its exploration from the scores and K,
    so its slate is sampled by the base policy calibrated at K, and its prefix probabilities are
    that policy's, not those of its own calibration at a shorter length."""
    calibrate = getattr(policy, "calibrate", None)
    return policy if calibrate is None else calibrate(scores, k).policy


@dataclass(frozen=True)
class Replayed:
    """A target replayed on logged decisions: the OPE rows, and ``ope.support`` diagnostics
    (``zero_target_share`` always; the unsupported mass when the logging policy was given)."""

    batch: OpeBatch
    support: dict[str, float]


def replay_window(
    window: LoggedWindow,
    *,
    scorer: Scorer,
    policy: ReplayPolicy,
    logging_policy: HasMarginals | None = None,
) -> Replayed:
    """OPE rows for a target (scorer, policy) on the logged decisions, one row per position:
    reward = played; the logged marginal, slate and prefix propensities (``pscore``,
    ``pscore_slate``, ``pscore_cascade``) and the target's (``target_pscore``,
    ``target_pscore_slate``, ``target_pscore_cascade``, ``target_pscore_item``; see
    ``ope.replay``), so every slate estimator runs on the replayed logs. A target whose prefix
    probabilities are not known (random insertion: they depend on the slate's length) gets no
    cascade columns; its marginals and whole-slate probabilities are exact.

    ``logging_policy``: the policy that logged the window, replayed on the logged candidate
    scores for the support diagnostics (e.g. rebuilt from the logged exploration parameters).
    """
    slates = window.slates
    if slates["propensity"].isna().any():
        raise ValueError("the window holds decisions without exact marginal propensities")
    candidates = [np.asarray(c, dtype=np.int64) for c in window.decisions["candidate_ids"]]
    scores = scorer.score(window.requests, candidates)
    rows_of = slates.groupby("decision_id", sort=False).indices
    items = slates["item_id"].to_numpy()
    logged_positions = slates["position"].to_numpy()
    logged_prefix = slates["prefix_propensity"].to_numpy(dtype=np.float64)
    columns = {
        name: np.zeros(len(slates))
        for name in ("target", "item", "cascade", "slate", "logged_slate")
    }
    logging_marginals: list[np.ndarray] = []
    target_marginals: list[np.ndarray] = []
    prefixes_known = True
    for decision_id, cands, s, logged_scores in zip(
        window.decisions["decision_id"],
        candidates,
        scores,
        window.decisions["candidate_scores"],
        strict=True,
    ):
        rows = rows_of.get(decision_id)
        if rows is None:
            continue
        rows = rows[np.argsort(logged_positions[rows])]
        index = pd.Index(cands).get_indexer(items[rows])
        if np.any(index < 0):
            raise ValueError(
                f"decision {decision_id} shows an item that is not among its candidates"
            )
        replayed = replay_slate(as_served(policy, s, rows.size), s, index, require_prefix=False)
        columns["target"][rows] = replayed.marginal
        columns["item"][rows] = replayed.item
        if replayed.prefix is None:
            prefixes_known = False
        else:
            columns["cascade"][rows] = replayed.prefix
        columns["slate"][rows] = replayed.slate
        columns["logged_slate"][rows] = logged_prefix[rows[-1]]
        if logging_policy is not None:
            logged = np.asarray(logged_scores, dtype=np.float64)
            logging_marginals.append(logging_policy.marginals(logged, rows.size))
            target_marginals.append(replayed.marginals)
    batch = OpeBatch.from_arrays(
        reward=slates["played"].to_numpy(dtype=np.float64),
        pscore=slates["propensity"].to_numpy(dtype=np.float64),
        target_pscore=columns["target"],
        decision_id=slates["decision_id"].to_numpy(),
        slot=logged_positions,
        slate_pscores={
            "pscore_slate": columns["logged_slate"],
            "target_pscore_slate": columns["slate"],
            "target_pscore_item": columns["item"],
        }
        | (
            {"pscore_cascade": logged_prefix, "target_pscore_cascade": columns["cascade"]}
            if prefixes_known
            else {}
        ),
    )
    support = support_diagnostics(
        logging_marginals=logging_marginals if logging_policy is not None else None,
        target_marginals=target_marginals if logging_policy is not None else None,
        batch=batch,
    )
    return Replayed(batch=batch, support=support)


def replay_batch(window: LoggedWindow, *, scorer: Scorer, policy: ReplayPolicy) -> OpeBatch:
    """The OPE rows of ``replay_window`` (every marginal, slate and prefix propensity)."""
    return replay_window(window, scorer=scorer, policy=policy).batch


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
