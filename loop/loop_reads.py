"""Reads of the log that a serving worker makes on its event loop itself, where that costs less
than handing them to a thread: a user's history on a history cache miss, from a SQLite file.

A miss read in one of the worker's database threads (:class:`api.deps.BlockingPool`) costs the
handover twice over: the thread waits for Python's interpreter lock while the loop runs other
requests (up to the switch interval, 5 ms, each time it takes it back), and the loop waits for
the thread's result. A SQLite read of one user's recent events is an index lookup of a few tens
of microseconds, and in WAL mode it never waits for a writer, so the loop makes it itself.

Only SQLite files, and never a wait the loop cannot bound: the reader has a connection of its
own (detached from the engine's pool, so that its busy timeout stays with it) whose busy timeout
is ``busy_ms`` (20 ms). WAL readers are locked out only by rare exclusive operations (recovery
after a crash, a ``VACUUM`` or a restore by another process); a read that meets one gives up
after ``busy_ms`` and returns None, and the caller reads in a thread as before. A PostgreSQL read
is a network round trip, which the loop must not wait for: no reader is made there
(:meth:`LoopReader.for_engine` returns None), nor for in-memory SQLite, whose one connection
the threads share.
"""

from __future__ import annotations

import logging
import sqlite3
from datetime import datetime

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from proplog.engine import is_sqlite_file
from proplog.schema import EventCreate
from proplog.store import user_history_and_later_on

logger = logging.getLogger(__name__)

DEFAULT_BUSY_MS = 20
_LOCKED = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


class LoopReader:
    """One connection to a SQLite log file, used only on the worker's event loop."""

    def __init__(self, engine: Engine, *, busy_ms: int = DEFAULT_BUSY_MS) -> None:
        self.busy_ms = busy_ms
        self.gave_up = 0
        """Reads that met a locked file and were left to a thread."""
        self._conn = engine.connect()
        self._conn.detach()  # closed for good on close(); its busy timeout is its own
        self._conn.exec_driver_sql(f"PRAGMA busy_timeout={int(busy_ms)}")
        self._conn.rollback()

    @classmethod
    def for_engine(cls, engine: Engine, *, busy_ms: int = DEFAULT_BUSY_MS) -> LoopReader | None:
        """A reader for a SQLite file's engine; None for any other database."""
        if not is_sqlite_file(engine):
            return None
        return cls(engine, busy_ms=busy_ms)

    def history(
        self, *, user_id: str, before: datetime, limit: int, later: bool
    ) -> list[EventCreate] | None:
        """:func:`proplog.store.user_history_and_later`, read here; None when the file stayed
        locked for ``busy_ms`` (read it in a thread instead)."""
        try:
            return user_history_and_later_on(
                self._conn, user_id=user_id, before=before, limit=limit, later=later
            )
        except OperationalError as exc:
            if getattr(exc.orig, "sqlite_errorcode", None) not in _LOCKED:
                raise
            self.gave_up += 1
            logger.info("history of %s: the log stayed locked %d ms; read in a thread", user_id,
                        self.busy_ms)  # fmt: skip
            return None

    def close(self) -> None:
        self._conn.close()
