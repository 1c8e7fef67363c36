"""The WAL checkpoints in a thread of their own: the batch writer's commits no longer checkpoint,
the thread does, the WAL stays at about what an interval writes, and what was written reads back
from the database file alone once the writer closes."""

from __future__ import annotations

import itertools
import sqlite3
import time
from pathlib import Path

import pytest

from proplog.batch_writer import BatchWriter
from proplog.engine import init_db, make_engine
from proplog.wal_checkpoints import WalCheckpoints
from tests.support.store_inputs import decision_payload

_keys = itertools.count()


def _write(writer: BatchWriter, n: int) -> None:
    """``n`` decisions of 1,000 candidates each (about two pages of scores apiece)."""
    futures = []
    for _ in range(n):
        payload = decision_payload(decision_id=f"00000000-0000-4000-8000-{next(_keys):012d}")
        payload["candidate_ids"] = list(range(1, 1001))
        payload["candidate_scores"] = [i / 1000 for i in range(1000)]
        futures.append(writer.submit_decision(payload))
    for future in futures:
        assert future.result(timeout=30).created


def _wal_pages(path: Path) -> int:
    wal = path.with_name(path.name + "-wal")
    return max(0, (wal.stat().st_size - 32) // (4096 + 24)) if wal.exists() else 0


def _log(tmp_path: Path):  # type: ignore[no-untyped-def]
    path = tmp_path / "log.db"
    engine = make_engine(f"sqlite:///{path}")
    init_db(engine)
    return path, engine


def test_the_writer_never_checkpoints_and_the_thread_does(tmp_path: Path) -> None:
    path, engine = _log(tmp_path)
    writer = BatchWriter(engine, checkpoint_interval_s=3600)  # the thread waits all along
    try:
        assert writer.checkpoints is not None
        _write(writer, 700)
        # SQLite's own checkpoint would have run in a commit by 1,000 pages; none ran.
        assert _wal_pages(path) > 1200
        assert writer.checkpoints.stats.runs == 0
        writer.checkpoints.checkpoint()
        assert writer.checkpoints.stats.pages_copied > 1200
    finally:
        writer.close()
        engine.dispose()
    # Everything reads back from the database file with no WAL beside it.
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM decision").fetchone()[0] == 700
        assert conn.execute("SELECT count(*) FROM slate_item").fetchone()[0] == 2100


def test_checkpoints_every_few_ms_keep_the_wal_small(tmp_path: Path) -> None:
    path, engine = _log(tmp_path)
    largest = 0
    with BatchWriter(engine, checkpoint_interval_s=0.005) as writer:
        for _ in range(8):
            _write(writer, 100)
            largest = max(largest, _wal_pages(path))
            time.sleep(0.03)
        assert writer.checkpoints is not None
        assert writer.checkpoints.stats.runs > 0 and writer.checkpoints.stats.errors == 0
    engine.dispose()
    assert 0 < largest < 1000  # the WAL was started again from its beginning


def test_only_a_sqlite_file_gets_them(tmp_path: Path) -> None:
    assert WalCheckpoints.for_engine(make_engine("sqlite://")) is None
    with BatchWriter(make_engine("sqlite://"), checkpoint_interval_s=0.2) as writer:
        assert writer.checkpoints is None
    with pytest.raises(ValueError, match="interval_s must be > 0"):
        WalCheckpoints(make_engine(f"sqlite:///{tmp_path / 'x.db'}"), interval_s=0)
