"""pandas readers of the propensity log, the inputs of analysts and retraining jobs.

Owns three frames, each read with one SQL query (joins and aggregates happen in the database):

- :func:`slate_frame`: one row per (decision, position) with the propensities and the reward
  joined from events: ``played`` (1 if a ``play`` event with ``source="rec"`` names that decision
  and position) and ``play_value`` (the sum of those events' ``value``).
- :func:`decision_frame`: one row per decision with its candidates and scores, to replay a new
  policy on logged candidates.
- :func:`event_frame`: the events.

``since``/``until`` select ``since <= created_at < until``. ``created_at`` columns are
``datetime64[us, UTC]``; propensities and scores are float64 read bit for bit as stored.

Only decisions that were **shown** are read by default (``shown_only=True``): every decision
except a deferred one (:mod:`proplog.activation`) that was not activated before its deadline,
whether it may still be activated or its deadline has passed. These two frames are the one way
OPE windows, the training table, the exports, A/B analysis and retraining read decisions, so a
slate nobody saw is never learned from nor evaluated. ``shown_only=False`` reads every logged
decision, for audits. A log without deferred decisions reads the same either way.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import Column, Connection, Engine, Select, Table, and_, case, func, select
from sqlalchemy.orm import Session

from proplog.activation import shown
from proplog.schema import Decision, Event, SlateItem
from proplog.validation import check_aware_utc

SessionOrEngine = Session | Engine | Connection

_DECISION: Table = Decision.__table__  # type: ignore[attr-defined]
_SLATE_ITEM: Table = SlateItem.__table__  # type: ignore[attr-defined]
_EVENT: Table = Event.__table__  # type: ignore[attr-defined]

SLATE_DTYPES: dict[str, str] = {
    "source_item": "Int64",
    "position": "int64",
    "item_id": "int64",
    "score": "float64",
    "propensity": "float64",
    "cond_propensity": "float64",
    "prefix_propensity": "float64",
    "explored": "bool",
    "played": "int64",
    "play_value": "float64",
}
DECISION_DTYPES: dict[str, str] = {"source_item": "Int64", "k": "int64", "marginals_exact": "bool"}
EVENT_DTYPES: dict[str, str] = {"item_id": "int64", "value": "float64", "position": "Int64"}


@contextmanager
def connection_of(source: SessionOrEngine) -> Iterator[Connection]:
    if isinstance(source, Engine):
        with source.connect() as conn:
            yield conn
    elif isinstance(source, Connection):
        yield source
    elif isinstance(source, Session):
        yield source.connection()
    else:
        raise TypeError(f"expected a Session, Engine or Connection; got {type(source).__name__}")


def time_window(
    stmt: Select[Any], column: Column[Any], since: datetime | None, until: datetime | None
) -> Select[Any]:
    """``stmt`` restricted to ``since <= column < until`` (either bound may be None)."""
    if since is not None:
        stmt = stmt.where(column >= check_aware_utc(since, "since"))
    if until is not None:
        stmt = stmt.where(column < check_aware_utc(until, "until"))
    return stmt


def read_frame(
    source: SessionOrEngine, stmt: Select[Any], dtypes: Mapping[str, str]
) -> pd.DataFrame:
    """Run ``stmt`` into a frame; ``created_at`` becomes ``datetime64[us, UTC]``."""
    with connection_of(source) as conn:
        result = conn.execute(stmt)
        columns = list(result.keys())
        # Plain tuples: pandas probes each sqlalchemy Row for dict-likeness, which is slow.
        frame = pd.DataFrame([tuple(row) for row in result.all()], columns=columns)
    frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True).astype(
        "datetime64[us, UTC]"
    )
    return frame.astype({name: dtype for name, dtype in dtypes.items() if name in frame.columns})


def slate_select(*, shown_only: bool = True) -> Select[Any]:
    """The query behind :func:`slate_frame`, without its time window: one row per (decision,
    position) with ``played`` and ``play_value`` joined from rec plays, ordered by
    ``created_at``, ``decision_id``, ``position`` (the exports page through it). With
    ``shown_only``, only decisions that were shown (:func:`proplog.activation.shown`)."""
    d, s, e = _DECISION, _SLATE_ITEM, _EVENT
    plays = func.count(e.c.event_id)
    stmt = (
        select(
            d.c.decision_id,
            d.c.created_at,
            d.c.user_id,
            d.c.surface,
            d.c.device,
            d.c.country,
            d.c.policy_name,
            d.c.policy_version,
            d.c.model_version,
            s.c.position,
            s.c.item_id,
            s.c.score,
            s.c.propensity,
            s.c.cond_propensity,
            s.c.prefix_propensity,
            s.c.explored,
            case((plays > 0, 1), else_=0).label("played"),
            func.coalesce(func.sum(e.c.value), 0.0).label("play_value"),
        )
        .select_from(
            d.join(s, s.c.decision_id == d.c.decision_id).outerjoin(
                e,
                and_(
                    e.c.decision_id == s.c.decision_id,
                    e.c.position == s.c.position,
                    e.c.kind == "play",
                    e.c.source == "rec",
                ),
            )
        )
        # decision_id and (decision_id, position) are primary keys, so PostgreSQL accepts the
        # other columns of both tables without listing them here.
        .group_by(d.c.decision_id, s.c.decision_id, s.c.position)
        .order_by(d.c.created_at, d.c.decision_id, s.c.position)
    )
    return stmt.where(shown(d.c.decision_id)) if shown_only else stmt


def slate_frame(
    *,
    session_or_engine: SessionOrEngine,
    since: datetime | None = None,
    until: datetime | None = None,
    shown_only: bool = True,
) -> pd.DataFrame:
    """One row per (decision, position), with ``played`` and ``play_value`` from rec plays.

    Ordered by ``created_at``, ``decision_id``, ``position``. ``shown_only=False`` includes
    deferred decisions that were not activated (for audits).
    """
    stmt = time_window(slate_select(shown_only=shown_only), _DECISION.c.created_at, since, until)
    return read_frame(session_or_engine, stmt, SLATE_DTYPES)


def decision_frame(
    *,
    session_or_engine: SessionOrEngine,
    since: datetime | None = None,
    until: datetime | None = None,
    shown_only: bool = True,
) -> pd.DataFrame:
    """One row per decision: context, ``k``, ``candidate_ids`` and ``candidate_scores`` (lists),
    ``exploration`` (dict), policy and model versions. Ordered by ``created_at``, ``decision_id``.
    ``shown_only=False`` includes deferred decisions that were not activated (for audits).
    """
    d = _DECISION
    stmt = select(
        d.c.decision_id,
        d.c.created_at,
        d.c.user_id,
        d.c.surface,
        d.c.device,
        d.c.country,
        d.c.local_time,
        d.c.query,
        d.c.source_item,
        d.c.k,
        d.c.candidate_ids,
        d.c.candidate_scores,
        d.c.exploration,
        d.c.marginals_exact,
        d.c.arm,
        d.c.policy_name,
        d.c.policy_version,
        d.c.model_version,
    ).order_by(d.c.created_at, d.c.decision_id)
    if shown_only:
        stmt = stmt.where(shown(d.c.decision_id))
    return read_frame(
        session_or_engine, time_window(stmt, d.c.created_at, since, until), DECISION_DTYPES
    )


def event_frame(
    *,
    session_or_engine: SessionOrEngine,
    since: datetime | None = None,
    until: datetime | None = None,
) -> pd.DataFrame:
    """All events (``since <= created_at < until``), ordered by ``created_at``, ``event_id``."""
    t = _EVENT
    stmt = select(
        t.c.event_id,
        t.c.created_at,
        t.c.user_id,
        t.c.item_id,
        t.c.kind,
        t.c.value,
        t.c.source,
        t.c.decision_id,
        t.c.position,
    ).order_by(t.c.created_at, t.c.event_id)
    return read_frame(
        session_or_engine, time_window(stmt, t.c.created_at, since, until), EVENT_DTYPES
    )
