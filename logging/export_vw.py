"""Export of the propensity log to Vowpal Wabbit ``cb_adf`` text, for ``vw --cb_adf -d FILE``.

Owns the conversion of logged decisions joined with their rewards into
:class:`explore.vw_format.LoggedSlate` records (:func:`logged_slates`) and the streamed text file
(:func:`export_cb_adf`). The text itself is written by :func:`explore.vw_format.cb_adf_lines`, the
one owner of the format, which is pure Python and numpy (the only import of this module from
outside the log's own libraries).

What is written, per logged decision (one multi-line example each, separated by a blank line):

- the shared line: surface, device, the daypart of the request's local time, country and the
  query's tokens (the log keeps no embeddings);
- one line per logged candidate, in the logged candidate order: its item id (hashed by VW) and its
  logging score;
- the label ``0:cost:probability`` on the item shown at position 0, with cost = −reward
  (``reward="played"``: 1 if a ``rec`` play names that decision and position, else 0;
  ``"play_value"``: the summed play values) and the logged propensity of position 0.

With ``all_positions=True`` every position k gets its own example: the candidates not shown above
it, labelled with the logged conditional propensity π(a_k | a_1..a_{k-1}, x). That is the exact
probability of the choice among the listed candidates, so ``--cb_adf`` learns from it unbiased.

The log is read in windows of ``created_at`` (``window``, one day by default) through
:func:`proplog.frames.decision_frame` and :func:`proplog.frames.slate_frame`, so logs larger than
memory stream through; the file appears under its name only when complete (a temporary file in
the same folder, then a rename).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from sqlalchemy import func, select
from tqdm import tqdm

from explore.vw_format import (
    ActionFeatures,
    LoggedSlate,
    RequestContext,
    daypart_of_hour,
    slate_examples,
)
from proplog.frames import SessionOrEngine, _connection, decision_frame, slate_frame
from proplog.schema import Decision
from proplog.validation import check_aware_utc

logger = logging.getLogger(__name__)

Reward = Literal["played", "play_value"]
REWARDS: tuple[str, ...] = ("played", "play_value")


@dataclass(frozen=True)
class VWExport:
    """What :func:`export_cb_adf` wrote."""

    path: Path
    decisions: int
    examples: int


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _daypart(local_time: str | None, decision_id: str) -> str | None:
    if local_time is None:
        return None
    try:
        when = datetime.fromisoformat(local_time)
    except ValueError as err:
        raise ValueError(
            f"decision {decision_id}: local_time must be an ISO time; got {local_time!r}"
        ) from err
    return daypart_of_hour(when.hour + when.minute / 60.0)


def _time_bounds(
    source: SessionOrEngine, since: datetime | None, until: datetime | None
) -> tuple[datetime, datetime] | None:
    """The first and last ``created_at`` of the decisions in [since, until), or None."""
    column = Decision.__table__.c.created_at  # type: ignore[attr-defined]
    stmt = select(func.min(column), func.max(column))
    if since is not None:
        stmt = stmt.where(column >= since)
    if until is not None:
        stmt = stmt.where(column < until)
    with _connection(source) as conn:
        first, last = conn.execute(stmt).one()
    return None if first is None else (first, last)


def _windows(
    source: SessionOrEngine, since: datetime | None, until: datetime | None, window: timedelta
) -> list[tuple[datetime, datetime]]:
    bounds = _time_bounds(source, since, until)
    if bounds is None:
        return []
    first, last = bounds
    count = math.floor((last - first) / window) + 1
    edges = [first + i * window for i in range(count + 1)]
    if until is not None:
        edges[-1] = min(edges[-1], until)
    return list(pairwise(edges))


def _slates_of_window(
    decisions: pd.DataFrame, items: pd.DataFrame, reward: Reward
) -> Iterator[LoggedSlate]:
    by_decision = {
        decision_id: group for decision_id, group in items.groupby("decision_id", sort=False)
    }
    for row in decisions.itertuples(index=False):
        decision_id = str(row.decision_id)
        shown = by_decision.get(decision_id)
        if shown is None:
            continue  # a decision without slate items has no choice to learn from
        candidate_ids = np.asarray(row.candidate_ids, dtype=np.int64)
        index = {int(item): i for i, item in enumerate(candidate_ids.tolist())}
        chosen = []
        for position, item in zip(shown["position"], shown["item_id"], strict=True):
            if int(item) not in index:
                raise ValueError(
                    f"decision {decision_id}: slate item {item} at position {position} is not "
                    "among its candidate_ids"
                )
            chosen.append(index[int(item)])
        yield LoggedSlate(
            context=RequestContext(
                surface=_text(row.surface),
                device=_text(row.device),
                daypart=_daypart(_text(row.local_time), decision_id),
                country=_text(row.country),
                query=_text(row.query),
            ),
            actions=ActionFeatures(scores=np.asarray(row.candidate_scores), item_ids=candidate_ids),
            chosen=np.asarray(chosen, dtype=np.int64),
            cond_propensity=shown["cond_propensity"].to_numpy(dtype=np.float64),
            reward=shown[reward].to_numpy(dtype=np.float64),
            decision_id=decision_id,
        )


def logged_slates(
    *,
    session_or_engine: SessionOrEngine,
    since: datetime | None = None,
    until: datetime | None = None,
    window: timedelta = timedelta(days=1),
    reward: Reward = "played",
    progress: bool = False,
) -> Iterator[LoggedSlate]:
    """Logged decisions with ``since <= created_at < until`` joined with their rewards, oldest
    first, read one ``window`` of ``created_at`` at a time."""
    if reward not in REWARDS:
        raise ValueError(f"reward must be one of {REWARDS}; got {reward!r}")
    if window <= timedelta(0):
        raise ValueError(f"window must be a positive timedelta; got {window}")
    since = check_aware_utc(since, "since") if since is not None else None
    until = check_aware_utc(until, "until") if until is not None else None
    windows = _windows(session_or_engine, since, until, window)
    for start, end in tqdm(windows, desc="log windows", unit="window", disable=not progress):
        decisions = decision_frame(session_or_engine=session_or_engine, since=start, until=end)
        items = slate_frame(session_or_engine=session_or_engine, since=start, until=end)
        logger.debug("window %s .. %s: %d decisions", start, end, len(decisions))
        yield from _slates_of_window(decisions, items, reward)


def export_cb_adf(
    *,
    session_or_engine: SessionOrEngine,
    path: str | Path,
    all_positions: bool = False,
    since: datetime | None = None,
    until: datetime | None = None,
    window: timedelta = timedelta(days=1),
    reward: Reward = "played",
    progress: bool = False,
) -> VWExport:
    """Write the log as VW ``cb_adf`` text to ``path`` (see the module docstring)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    decisions = examples = 0
    try:
        with temporary.open("w", encoding="utf-8", newline="\n") as out:
            for logged in logged_slates(
                session_or_engine=session_or_engine,
                since=since,
                until=until,
                window=window,
                reward=reward,
                progress=progress,
            ):
                for lines in slate_examples(logged, all_positions=all_positions):
                    out.write("\n".join(lines))
                    out.write("\n\n")
                    examples += 1
                decisions += 1
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    logger.info("wrote %d cb_adf examples of %d decisions to %s", examples, decisions, path)
    return VWExport(path=path, decisions=decisions, examples=examples)
