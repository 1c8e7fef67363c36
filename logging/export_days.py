"""The export as a Parquet dataset partitioned by day: ``ROOT/day=YYYY-MM-DD/part-0.parquet``,
one file per UTC day of ``created_at``, in the export's columns (:mod:`proplog.export`).

What Spark, DuckDB or ``loopbreak ope estimate`` read as one dataset (a folder or a glob of its
days). The log is read once, in :func:`proplog.export.iter_export_chunks`' chunks (whole
decisions in ``(created_at, decision_id)`` order, a consistent snapshot on PostgreSQL), so a
decision's rows are in one file and contiguous there. The dataset is written in a staging folder
beside ``ROOT`` and renamed into place when complete: a failed export leaves nothing at ``ROOT``.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from proplog.export import DEFAULT_CHUNK_DECISIONS, EXPORT_SCHEMA, iter_export_chunks
from proplog.frames import SessionOrEngine

logger = logging.getLogger(__name__)

PART = "part-0.parquet"


@dataclass(frozen=True)
class DaysExport:
    """What :func:`write_parquet_days` wrote: the days (``YYYY-MM-DD``) with rows, and counts."""

    root: Path
    days: tuple[str, ...]
    decisions: int
    rows: int


def day_path(root: Path, day: str) -> Path:
    return root / f"day={day}" / PART


def write_parquet_days(
    *,
    session_or_engine: SessionOrEngine,
    root: str | Path,
    chunk_decisions: int = DEFAULT_CHUNK_DECISIONS,
    since: datetime | None = None,
    until: datetime | None = None,
    compression: str = "zstd",
) -> DaysExport:
    """Write the export of ``since <= created_at < until`` under ``root``, one file a day.
    ``root`` must not exist yet or be an empty folder."""
    root = Path(root)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise FileExistsError(f"{root} already exists and is not an empty folder")
    staging = root.with_name(f".{root.name}.{os.getpid()}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    days: list[str] = []
    decisions = rows = 0
    writer: pq.ParquetWriter | None = None
    try:
        for frame in iter_export_chunks(
            session_or_engine=session_or_engine,
            chunk_decisions=chunk_decisions,
            since=since,
            until=until,
        ):
            day_of = frame["created_at"].dt.strftime("%Y-%m-%d").to_numpy()
            for day in dict.fromkeys(day_of):  # in order: chunks are in created_at order
                if not days or days[-1] != day:
                    if writer is not None:
                        writer.close()
                    path = day_path(staging, day)
                    path.parent.mkdir(parents=True)
                    writer = pq.ParquetWriter(path, EXPORT_SCHEMA, compression=compression)
                    days.append(day)
                part = frame[day_of == day]
                writer.write_table(  # type: ignore[union-attr]
                    pa.Table.from_pandas(part, schema=EXPORT_SCHEMA, preserve_index=False)
                )
                decisions += part["decision_id"].nunique()
                rows += len(part)
        if writer is not None:
            writer.close()
            writer = None
        staging.mkdir(exist_ok=True)
        if root.exists():
            root.rmdir()  # the empty folder it was allowed to be
        staging.replace(root)
    finally:
        if writer is not None:
            writer.close()
        shutil.rmtree(staging, ignore_errors=True)
    logger.info(
        "exported %d decisions (%d rows) in %d days to %s", decisions, rows, len(days), root
    )
    return DaysExport(root=root, days=tuple(days), decisions=decisions, rows=rows)


__all__ = ["PART", "DaysExport", "day_path", "write_parquet_days"]
