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

The log is read ``chunk_decisions`` whole decisions at a time through
:func:`proplog.export.iter_export_chunks` (keyset pagination, a consistent snapshot on
PostgreSQL) plus one query per chunk for those decisions' candidates, context and scores, so logs
larger than memory stream through. The file appears under its name only when complete (a
temporary file in the same folder, then a rename).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from sqlalchemy import Table, select
from tqdm import tqdm

from explore.vw_format import (
    ActionFeatures,
    LoggedSlate,
    RequestContext,
    daypart_name,
    slate_examples,
)
from proplog.export import DEFAULT_CHUNK_DECISIONS, iter_export_chunks
from proplog.frames import SessionOrEngine, connection_of
from proplog.schema import Decision
from vocab import local_hour_of

logger = logging.getLogger(__name__)

_DECISION: Table = Decision.__table__  # type: ignore[attr-defined]
_IDS_PER_QUERY = 5_000
"""Decision ids per ``IN (...)`` list, well below SQLite's and PostgreSQL's parameter limits."""

Reward = Literal["played", "play_value"]
REWARDS: dict[str, str] = {"played": "reward", "play_value": "play_value"}
"""Reward name -> the column of :func:`proplog.export.iter_export_chunks` that holds it."""


@dataclass(frozen=True)
class VWExport:
    """What :func:`export_cb_adf` wrote."""

    path: Path
    decisions: int
    examples: int


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _daypart(local_time: str | None, decision_id: str) -> str | None:
    try:
        hour = local_hour_of(local_time)
    except ValueError as err:
        raise ValueError(f"decision {decision_id}: {err}") from err
    return None if hour is None else daypart_name(hour)


def _decisions_by_id(source: SessionOrEngine, ids: Sequence[str]) -> dict[str, Any]:
    """The candidates, scores and request context of the decisions ``ids``."""
    d = _DECISION.c
    columns = (d.decision_id, d.local_time, d.query, d.candidate_ids, d.candidate_scores)
    rows: dict[str, Any] = {}
    with connection_of(source) as conn:
        for start in range(0, len(ids), _IDS_PER_QUERY):
            batch = list(ids[start : start + _IDS_PER_QUERY])
            for row in conn.execute(select(*columns).where(d.decision_id.in_(batch))):
                rows[row.decision_id] = row
    return rows


def _slates_of_chunk(
    source: SessionOrEngine, chunk: pd.DataFrame, reward_column: str
) -> Iterator[LoggedSlate]:
    """The logged slates of one export chunk (whole decisions, rows ordered by slot)."""
    groups = chunk.groupby("decision_id", sort=False)
    decisions = _decisions_by_id(source, [str(i) for i in groups.groups])
    for decision_id, shown in groups:
        decision_id = str(decision_id)
        stored = decisions[decision_id]
        candidate_ids = np.asarray(stored.candidate_ids, dtype=np.int64)
        index = {item: i for i, item in enumerate(candidate_ids.tolist())}
        chosen = []
        for slot, item in zip(shown["slot"].tolist(), shown["item_id"].tolist(), strict=True):
            if item not in index:
                raise ValueError(
                    f"decision {decision_id}: slate item {item} at position {slot} is not among "
                    "its candidate_ids"
                )
            chosen.append(index[item])
        first = shown.iloc[0]
        yield LoggedSlate(
            context=RequestContext(
                surface=_text(first["surface"]),
                device=_text(first["device"]),
                daypart=_daypart(_text(stored.local_time), decision_id),
                country=_text(first["country"]),
                query=_text(stored.query),
            ),
            actions=ActionFeatures(
                scores=np.asarray(stored.candidate_scores, dtype=np.float64),
                item_ids=candidate_ids,
            ),
            chosen=np.asarray(chosen, dtype=np.int64),
            cond_propensity=shown["cond_propensity"].to_numpy(dtype=np.float64),
            reward=shown[reward_column].to_numpy(dtype=np.float64),
            decision_id=decision_id,
        )


def logged_slates(
    *,
    session_or_engine: SessionOrEngine,
    since: datetime | None = None,
    until: datetime | None = None,
    chunk_decisions: int = DEFAULT_CHUNK_DECISIONS,
    reward: Reward = "played",
    progress: bool = False,
) -> Iterator[LoggedSlate]:
    """Logged decisions with ``since <= created_at < until`` joined with their rewards, in
    ``(created_at, decision_id)`` order, read ``chunk_decisions`` decisions at a time."""
    if reward not in REWARDS:
        raise ValueError(f"reward must be one of {tuple(REWARDS)}; got {reward!r}")
    chunks = iter_export_chunks(
        session_or_engine=session_or_engine,
        chunk_decisions=chunk_decisions,
        since=since,
        until=until,
    )
    with tqdm(desc="decisions", unit="decision", disable=not progress) as bar:
        for chunk in chunks:
            for logged in _slates_of_chunk(session_or_engine, chunk, REWARDS[reward]):
                yield logged
                bar.update()


def export_cb_adf(
    *,
    session_or_engine: SessionOrEngine,
    path: str | Path,
    all_positions: bool = False,
    since: datetime | None = None,
    until: datetime | None = None,
    chunk_decisions: int = DEFAULT_CHUNK_DECISIONS,
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
                chunk_decisions=chunk_decisions,
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
