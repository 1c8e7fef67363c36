"""From the propensity log to model inputs: training impressions and policy replay for OPE.

Both read the log once into frames and build point-in-time histories with ``HistoryIndex``, so
that a decision at t only ever sees events strictly before t.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd
from sqlalchemy import Engine

from fm_core import Scorer, ScoreRequest, TrainingImpressions
from loop.context import HistoryIndex, score_request
from ope import OpeBatch
from ope.replay import HasMarginals, ReplayPolicy, replay_slate
from ope.support import support_diagnostics
from proplog.frames import decision_frame, event_frame, slate_frame
from proplog.training_table import TrainingTableConfig, build_training_table


@dataclass(frozen=True)
class LoggedWindow:
    """Decisions, slates and events of a time window, with the requests as the scorer saw them."""

    decisions: pd.DataFrame
    slates: pd.DataFrame
    events: pd.DataFrame
    requests: list[ScoreRequest]

    def since(self, when: datetime) -> LoggedWindow:
        """The decisions at or after ``when`` (with the same events), without reading again."""
        keep = (self.decisions["created_at"] >= when).to_numpy()
        decisions = self.decisions[keep].reset_index(drop=True)
        slates = self.slates[self.slates["decision_id"].isin(decisions["decision_id"])]
        return LoggedWindow(
            decisions=decisions,
            slates=slates.reset_index(drop=True),
            events=self.events,
            requests=[r for r, k in zip(self.requests, keep, strict=True) if k],
        )


def read_window(
    engine: Engine,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    history_limit: int = 200,
) -> LoggedWindow:
    """Read decisions in [since, until) with point-in-time histories from the events before
    ``until``: nothing after the window's end reaches a model trained on it (popularity counts
    included)."""
    decisions = decision_frame(session_or_engine=engine, since=since, until=until)
    slates = slate_frame(session_or_engine=engine, since=since, until=until)
    events = event_frame(session_or_engine=engine, until=until)
    histories = HistoryIndex(events, max_events=history_limit)
    requests = [
        score_request(
            row,
            when=row.created_at,
            history=histories.before(row.user_id, row.created_at.timestamp()),
        )
        for row in decisions.itertuples(index=False)
    ]
    return LoggedWindow(decisions=decisions, slates=slates, events=events, requests=requests)


def training_impressions(
    window: LoggedWindow, config: TrainingTableConfig | None = None
) -> TrainingImpressions:
    """The window's weighted training table (``proplog.training_table``) as model input: slate
    positions labelled by whether they were played, weighted by their clipped, self-normalized
    inverse propensity, plus search and direct plays as positives in the context of the user's
    latest decision; plays of every source feed the point-in-time popularity."""
    table = build_training_table(
        decisions=window.decisions, slates=window.slates, events=window.events, config=config
    )
    rows = table.rows
    plays = window.events[window.events["kind"] == "play"]
    return TrainingImpressions(
        requests=window.requests,
        request_index=rows["request_row"].to_numpy(dtype=np.int64),
        item_ids=rows["item_id"].to_numpy(dtype=np.int64),
        positions=rows["position"].to_numpy(dtype=np.int64),
        labels=rows["label"].to_numpy(dtype=np.float64),
        weights=rows["weight"].to_numpy(dtype=np.float64),
        play_item_ids=plays["item_id"].to_numpy(dtype=np.int64),
        play_times=plays["created_at"].map(lambda t: t.timestamp()).to_numpy(dtype=np.float64),
    )


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
    ``ope.replay``), so every slate estimator runs on the replayed logs.

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
        replayed = replay_slate(policy, s, index)
        columns["target"][rows] = replayed.marginal
        columns["item"][rows] = replayed.item
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
            "pscore_cascade": logged_prefix,
            "target_pscore_cascade": columns["cascade"],
            "target_pscore_item": columns["item"],
        },
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
