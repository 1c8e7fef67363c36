"""Log windows: the decisions, slates and events of a time window read once into frames, with
the requests as the scorer saw them, and the window's weighted training impressions.

Histories are point in time (``HistoryIndex``): a decision at t only ever sees events strictly
before t, and nothing after the window's end.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd
from sqlalchemy import Engine

from fm_core import ScoreRequest, TrainingImpressions
from loop.context import HistoryIndex, RequestContext
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
        RequestContext.of_logged(row).score_request(
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
