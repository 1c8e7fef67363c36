"""Conversions between the log's records and the scorer's inputs.

One place turns a stored event history into the scorer's ``History`` and a decision's context
into a ``ScoreRequest``, so that serving, training and replay see the same features.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from fm_core import History, ScoreRequest
from proplog.schema import EventCreate
from vocab import local_hour_of


def history_from_events(events: Sequence[EventCreate]) -> History:
    """History from store events, oldest first."""
    if not events:
        return History()
    return History(
        item_ids=np.array([e.item_id for e in events], dtype=np.int64),
        times=np.array([e.created_at.timestamp() for e in events]),
        kinds=np.array([e.kind for e in events], dtype=object),
        values=np.array([e.value for e in events], dtype=np.float64),
        sources=np.array([e.source for e in events], dtype=object),
    )


class HistoryIndex:
    """Point-in-time histories from an event frame: events of a user strictly before a time.

    Built once from ``proplog.frames.event_frame`` output, then sliced per request, so that
    training and replay over many decisions do not query the store once per decision.
    """

    def __init__(self, events: pd.DataFrame, *, max_events: int | None = None) -> None:
        self.max_events = max_events
        frame = events.sort_values(["user_id", "created_at", "event_id"], kind="stable")
        times = frame["created_at"].map(lambda t: t.timestamp()).to_numpy(dtype=np.float64)
        users = frame["user_id"].to_numpy()
        self._item = frame["item_id"].to_numpy(dtype=np.int64)
        self._time = times
        self._kind = frame["kind"].to_numpy(dtype=object)
        self._value = frame["value"].to_numpy(dtype=np.float64)
        self._source = frame["source"].to_numpy(dtype=object)
        self._span: dict[str, tuple[int, int]] = {}
        if users.size:
            starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
            ends = np.r_[starts[1:], users.size]
            self._span = {
                str(users[s]): (int(s), int(e)) for s, e in zip(starts, ends, strict=True)
            }

    def before(self, user_id: str, time: float) -> History:
        """The user's events with time < ``time``, oldest first (at most ``max_events``)."""
        start, end = self._span.get(user_id, (0, 0))
        cut = start + int(np.searchsorted(self._time[start:end], time, side="left"))
        if self.max_events is not None:
            start = max(start, cut - self.max_events)
        sl = slice(start, cut)
        return History(
            item_ids=self._item[sl],
            times=self._time[sl],
            kinds=self._kind[sl],
            values=self._value[sl],
            sources=self._source[sl],
        )


@dataclass(frozen=True)
class RequestContext:
    """The request a decision answers, as the log stores it and the scorer reads it: one shape
    for a live request (``DecisionInput.context``), a logged decision
    (``RequestContext.of_logged``) and a simulated request (``loop.sim_bridge``)."""

    user_id: str
    surface: str
    device: str | None = None
    country: str | None = None
    local_time: str | None = None
    query: str | None = None
    source_item: int | None = None

    @classmethod
    def of_logged(cls, row: Any) -> RequestContext:
        """The context of a logged decision: a ``proplog.frames.decision_frame`` row or a
        ``DecisionCreate``. A frame holds a missing ``source_item`` (and, when some decisions
        have one, a missing ``query``) as NaN; it becomes None."""
        item = row.source_item
        query = row.query
        return cls(
            user_id=row.user_id,
            surface=row.surface,
            device=row.device,
            country=row.country,
            local_time=row.local_time,
            query=query if isinstance(query, str) else None,
            source_item=None if item is None or pd.isna(item) else int(item),
        )

    def record_fields(self) -> dict[str, Any]:
        """The decision record's context columns (every field is an immutable scalar, so a
        shallow dict; ``dataclasses.asdict`` would deep-copy each, on every decision)."""
        return {
            "user_id": self.user_id,
            "surface": self.surface,
            "device": self.device,
            "country": self.country,
            "local_time": self.local_time,
            "query": self.query,
            "source_item": self.source_item,
        }

    def score_request(self, *, when: datetime, history: History) -> ScoreRequest:
        """The scorer's view of this request at ``when`` with the user's ``history``."""
        return ScoreRequest(
            user_id=self.user_id,
            time=when.timestamp(),
            surface=self.surface,
            device=self.device,
            country=self.country,
            local_hour=local_hour_of(self.local_time),
            query=self.query,
            source_item=self.source_item,
            history=history,
        )
