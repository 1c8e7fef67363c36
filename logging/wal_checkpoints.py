"""Checkpoints of a SQLite log's write-ahead log in a thread of their own, so that no commit
waits for one.

By default SQLite checkpoints in the commit that takes the WAL past 1,000 pages: that commit
copies about 4 MB into the database file and syncs it before it returns. Behind a batch writer
that commit holds the answers of every request in its batch, and the batch queued behind it,
for the whole copy: at a few hundred decisions a second it happens every second or two and is
what the slowest answers wait for. :class:`WalCheckpoints` turns the automatic checkpoint off
on the writer's connection (:meth:`WalCheckpoints.take_over`) and runs a ``PASSIVE`` checkpoint
every ``interval_s`` on a connection of its own. A passive checkpoint never waits for a reader
or a writer, and commits go on appending to the WAL while it copies; the next writer after a
complete one starts the WAL from its beginning again, so the file stays about the size that
``interval_s`` of writes takes.

Only for SQLite files (:meth:`WalCheckpoints.for_engine` returns None otherwise). Other
processes' connections (the command line's, another worker's without one) keep SQLite's
automatic checkpoints.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from sqlalchemy import Connection, Engine

from proplog.engine import is_sqlite_file

logger = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 0.2
LAGGING_PAGES = 20_000
"""WAL pages left after a checkpoint above which it is logged as falling behind (about 80 MB:
a reader that holds an old snapshot keeps the pages it may read from being copied)."""


@dataclass
class CheckpointStats:
    runs: int = 0
    busy: int = 0
    """Checkpoints that could not start (another connection was checkpointing)."""
    pages_copied: int = 0
    errors: int = 0


class WalCheckpoints:
    """A thread that checkpoints the WAL of ``engine``'s SQLite file every ``interval_s``."""

    def __init__(self, engine: Engine, *, interval_s: float = DEFAULT_INTERVAL_S) -> None:
        if not interval_s > 0:
            raise ValueError(f"interval_s must be > 0 seconds; got {interval_s!r}")
        self.interval_s = float(interval_s)
        self.stats = CheckpointStats()
        self._conn = engine.connect()
        self._conn.detach()  # its own for the thread's life, outside the pool the requests use
        self._conn.rollback()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="proplog-wal-checkpoints",
                                        daemon=True)  # fmt: skip
        self._thread.start()

    @classmethod
    def for_engine(
        cls, engine: Engine, *, interval_s: float = DEFAULT_INTERVAL_S
    ) -> WalCheckpoints | None:
        """Checkpoints for a SQLite file's engine; None for any other database."""
        if not is_sqlite_file(engine):
            return None
        return cls(engine, interval_s=interval_s)

    @staticmethod
    def take_over(connection: Connection) -> None:
        """Turn SQLite's automatic checkpoints off on ``connection`` (the writer's): this
        thread checkpoints instead. Leaves no transaction open on it."""
        connection.exec_driver_sql("PRAGMA wal_autocheckpoint=0")
        connection.commit()

    def checkpoint(self) -> None:
        """One passive checkpoint now (also what the thread runs)."""
        busy, wal_pages, copied = self._conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").one()
        self._conn.rollback()
        self.stats.runs += 1
        self.stats.busy += int(busy)
        self.stats.pages_copied += max(0, int(copied))
        if wal_pages - copied > LAGGING_PAGES:
            logger.warning(
                "WAL checkpoints are falling behind: %d of %d pages not yet copied (a reader "
                "holding an old snapshot?)", wal_pages - copied, wal_pages,
            )  # fmt: skip

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.checkpoint()
            except Exception:  # a failed checkpoint loses nothing: the WAL keeps the pages
                self.stats.errors += 1
                logger.exception("WAL checkpoint failed; trying again in %.1f s", self.interval_s)

    def close(self) -> None:
        """Stop the thread after one last checkpoint, and close its connection."""
        self._stop.set()
        self._thread.join(timeout=10)
        try:
            self.checkpoint()
        except Exception:
            logger.exception("the last WAL checkpoint failed; SQLite will finish it later")
        finally:
            self._conn.close()
