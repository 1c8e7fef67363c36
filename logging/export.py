"""Exports of the propensity log for analysts and offline jobs: pandas, Parquet and CSV, in chunks.

Owns the export table: one row per logged (decision, position), with the OPE input contract's
names (DESIGN.md §5) where they apply:

- ``decision_id``, ``created_at``, ``user_id``, ``surface``, ``device``, ``country``, the policy
  and model versions;
- ``slot`` (the 0-based position), ``item_id``, ``score``, ``explored``;
- ``pscore``: the logged marginal propensity of the item at that slot (NULL where the policy's
  marginals are not exact); ``cond_propensity``;
- ``pscore_cascade``: the probability of the slate's prefix up to and including the slot (the
  logged ``prefix_propensity``); ``pscore_slate``: the probability of the whole slate (the prefix
  probability at the decision's last slot, the same on every row of the decision);
- ``reward``: 1 if a ``play`` event with ``source="rec"`` names the decision and slot, else 0;
  ``play_value``: the summed ``value`` (seconds watched) of those plays.

An analyst adds ``target_pscore`` (and the slate target columns) and hands the file to
``loopbreak ope estimate``.

Only shown decisions are exported: a deferred decision (:mod:`proplog.activation`) that was not
activated before its deadline is left out, as in every frame of :mod:`proplog.frames` by default
(its slate was never seen, so it has no reward to learn from). An audit of every logged decision
reads ``proplog.frames.slate_frame(shown_only=False)``.

:func:`iter_export_chunks` reads the log a chunk of ``chunk_decisions`` decisions at a time, by
keyset pagination on ``(created_at, decision_id)``: each chunk is one bounded query, so memory
holds one chunk and never the whole log, and a decision's rows are never split between chunks.
:func:`write_parquet` streams the chunks through one ``pyarrow.parquet.ParquetWriter`` (one row
group per chunk), :func:`write_csv` appends them to a CSV file. On PostgreSQL the export reads
in one ``REPEATABLE READ`` transaction, so it is a consistent snapshot; on SQLite decisions
committed while an export runs may or may not be in it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import Connection, Engine, Table, and_, or_, select, true
from sqlalchemy.orm import Session

from proplog.activation import shown
from proplog.frames import (
    SLATE_DTYPES,
    SessionOrEngine,
    read_frame,
    slate_frame,
    slate_select,
    time_window,
)
from proplog.schema import Decision

logger = logging.getLogger(__name__)

_DECISION: Table = Decision.__table__  # type: ignore[attr-defined]

DEFAULT_CHUNK_DECISIONS = 10_000

EXPORT_SCHEMA = pa.schema(
    [
        ("decision_id", pa.string()),
        ("created_at", pa.timestamp("us", tz="UTC")),
        ("user_id", pa.string()),
        ("surface", pa.string()),
        ("device", pa.string()),
        ("country", pa.string()),
        ("policy_name", pa.string()),
        ("policy_version", pa.string()),
        ("model_version", pa.string()),
        ("slot", pa.int64()),
        ("item_id", pa.int64()),
        ("score", pa.float64()),
        ("pscore", pa.float64()),
        ("cond_propensity", pa.float64()),
        ("pscore_cascade", pa.float64()),
        ("pscore_slate", pa.float64()),
        ("explored", pa.bool_()),
        ("reward", pa.int64()),
        ("play_value", pa.float64()),
    ]
)
"""The export's columns and types, the same in every chunk and every format."""
EXPORT_COLUMNS: tuple[str, ...] = tuple(EXPORT_SCHEMA.names)
_TEXT_COLUMNS = tuple(f.name for f in EXPORT_SCHEMA if f.type == pa.string())
_RENAMES = {
    "position": "slot",
    "propensity": "pscore",
    "prefix_propensity": "pscore_cascade",
    "played": "reward",
}


@dataclass(frozen=True)
class ExportSummary:
    """What an export wrote."""

    path: Path
    format: str
    decisions: int
    rows: int
    chunks: int


def to_export_frame(slates: pd.DataFrame) -> pd.DataFrame:
    """A ``slate_frame`` (whole decisions, ordered by decision then position) in export columns."""
    frame = slates.rename(columns=_RENAMES)
    if len(frame):
        # Rows of a decision are adjacent and ordered by slot: its last row holds the slate's
        # probability.
        frame["pscore_slate"] = frame.groupby("decision_id", sort=False)[
            "pscore_cascade"
        ].transform("last")
    else:
        frame["pscore_slate"] = pd.Series(dtype="float64")
    return _plain_text(frame[list(EXPORT_COLUMNS)].reset_index(drop=True))


def _plain_text(frame: pd.DataFrame) -> pd.DataFrame:
    """Text columns as Python strings with None for missing, the same in every chunk (pandas
    infers another dtype for a column that is all missing)."""
    for name in _TEXT_COLUMNS:
        column = frame[name].astype(object)
        frame[name] = column.where(column.notna(), None)
    return frame


def export_frame(
    *,
    session_or_engine: SessionOrEngine,
    since: datetime | None = None,
    until: datetime | None = None,
) -> pd.DataFrame:
    """The whole export of ``since <= created_at < until`` as one in-memory frame (one query)."""
    slates = slate_frame(session_or_engine=session_or_engine, since=since, until=until)
    return to_export_frame(slates)


def _check_chunk(chunk_decisions: int) -> int:
    if (
        isinstance(chunk_decisions, bool)
        or not isinstance(chunk_decisions, int)
        or chunk_decisions < 1
    ):
        raise ValueError(f"chunk_decisions must be an integer >= 1; got {chunk_decisions!r}")
    return chunk_decisions


def _after(key: tuple[datetime, str] | None) -> Any:
    """Rows strictly after the keyset position ``key`` (everything when None)."""
    return true() if key is None else ~_through(key)


def _through(key: tuple[datetime, str] | None) -> Any:
    """Rows at or before the keyset position ``key`` (everything when None)."""
    d = _DECISION.c
    if key is None:
        return true()
    created_at, decision_id = key
    return or_(
        d.created_at < created_at, and_(d.created_at == created_at, d.decision_id <= decision_id)
    )


def _chunks_on(
    conn: Connection,
    chunk_decisions: int,
    since: datetime | None,
    until: datetime | None,
) -> Iterator[pd.DataFrame]:
    d = _DECISION.c
    last: tuple[datetime, str] | None = None
    while True:
        # The key of the chunk's last decision: the chunk_decisions-th one after ``last``.
        # Chunks count shown decisions only, the ones slate_select() reads.
        bound_stmt = time_window(
            select(d.created_at, d.decision_id).where(_after(last), shown(d.decision_id)),
            d.created_at,
            since,
            until,
        )
        bound_row = conn.execute(
            bound_stmt.order_by(d.created_at, d.decision_id).offset(chunk_decisions - 1).limit(1)
        ).first()
        bound = None if bound_row is None else (bound_row[0], bound_row[1])
        stmt = time_window(
            slate_select().where(_after(last), _through(bound)), d.created_at, since, until
        )
        slates = read_frame(conn, stmt, SLATE_DTYPES)
        if slates.empty:
            return
        yield to_export_frame(slates)
        if bound is None:
            return
        last = bound


def iter_export_chunks(
    *,
    session_or_engine: SessionOrEngine,
    chunk_decisions: int = DEFAULT_CHUNK_DECISIONS,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Iterator[pd.DataFrame]:
    """The export of ``since <= created_at < until`` as frames of at most ``chunk_decisions``
    whole decisions each, in ``(created_at, decision_id, slot)`` order."""
    _check_chunk(chunk_decisions)
    if isinstance(session_or_engine, Engine):
        with session_or_engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
            yield from _chunks_on(conn, chunk_decisions, since, until)
            conn.rollback()  # read-only: end the snapshot transaction
        return
    if isinstance(session_or_engine, Session):
        yield from _chunks_on(session_or_engine.connection(), chunk_decisions, since, until)
        return
    if isinstance(session_or_engine, Connection):
        yield from _chunks_on(session_or_engine, chunk_decisions, since, until)
        return
    raise TypeError(
        f"expected a Session, Engine or Connection; got {type(session_or_engine).__name__}"
    )


def _arrow_table(frame: pd.DataFrame) -> pa.Table:
    return pa.Table.from_pandas(frame, schema=EXPORT_SCHEMA, preserve_index=False)


def write_parquet(
    *,
    session_or_engine: SessionOrEngine,
    path: str | Path,
    chunk_decisions: int = DEFAULT_CHUNK_DECISIONS,
    since: datetime | None = None,
    until: datetime | None = None,
    compression: str = "zstd",
) -> ExportSummary:
    """Stream the export into a Parquet file, one row group per chunk; written to a temporary
    name and renamed, so a failed export never leaves a truncated file at ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    decisions = rows = chunks = 0
    try:
        with pq.ParquetWriter(partial, EXPORT_SCHEMA, compression=compression) as writer:
            for frame in iter_export_chunks(
                session_or_engine=session_or_engine,
                chunk_decisions=chunk_decisions,
                since=since,
                until=until,
            ):
                writer.write_table(_arrow_table(frame))
                decisions += frame["decision_id"].nunique()
                rows += len(frame)
                chunks += 1
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    logger.info("exported %d decisions (%d rows, %d chunks) to %s", decisions, rows, chunks, path)
    return ExportSummary(path=path, format="parquet", decisions=decisions, rows=rows, chunks=chunks)


def write_csv(
    *,
    session_or_engine: SessionOrEngine,
    path: str | Path,
    chunk_decisions: int = DEFAULT_CHUNK_DECISIONS,
    since: datetime | None = None,
    until: datetime | None = None,
) -> ExportSummary:
    """Stream the export into a CSV file with a header row (times in ISO 8601 UTC; an empty
    ``pscore`` where the marginal is not exact); written to a temporary name and renamed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    decisions = rows = chunks = 0
    try:
        with partial.open("w", newline="", encoding="utf-8") as out:
            for frame in iter_export_chunks(
                session_or_engine=session_or_engine,
                chunk_decisions=chunk_decisions,
                since=since,
                until=until,
            ):
                frame.to_csv(out, header=chunks == 0, index=False, float_format="%.17g")
                decisions += frame["decision_id"].nunique()
                rows += len(frame)
                chunks += 1
            if chunks == 0:
                out.write(",".join(EXPORT_COLUMNS) + "\n")
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    logger.info("exported %d decisions (%d rows) to %s", decisions, rows, path)
    return ExportSummary(path=path, format="csv", decisions=decisions, rows=rows, chunks=chunks)


def read_parquet_export(path: str | Path) -> pd.DataFrame:
    """A Parquet export read back into the frame :func:`export_frame` gives."""
    frame = pq.read_table(path).to_pandas()
    frame["created_at"] = frame["created_at"].astype("datetime64[us, UTC]")
    frame = _plain_text(frame)
    return frame.astype({"slot": np.int64, "item_id": np.int64, "reward": np.int64})


__all__ = [
    "DEFAULT_CHUNK_DECISIONS",
    "EXPORT_COLUMNS",
    "EXPORT_SCHEMA",
    "ExportSummary",
    "export_frame",
    "iter_export_chunks",
    "read_parquet_export",
    "to_export_frame",
    "write_csv",
    "write_parquet",
]
