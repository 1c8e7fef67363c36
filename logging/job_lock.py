"""One run at a time of a scheduled job against one log: a lock named after the job, held for
the run and released however it ends.

- **PostgreSQL**: a session-level advisory lock (``pg_try_advisory_lock``) on a connection kept
  open for the run, keyed by a stable 64-bit hash of the job's name, so runs on different
  machines exclude each other and a crashed run's lock goes with its connection.
- **A SQLite file**: an exclusive ``flock`` on ``<database>-<job>.lock`` beside it, which the
  kernel releases when the process ends.
- **In-memory SQLite** is private to its process: nothing to exclude.

``job_lock`` never waits: a second run finds the lock held and gets ``JobLockedError`` at once, so a
scheduler that starts the job again while a slow run goes on does not pile runs up.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, text

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Linux or macOS
    fcntl = None  # type: ignore[assignment]


class JobLockedError(RuntimeError):
    """Another run of the same job holds the lock."""


def _key(job: str) -> int:
    """A signed 64-bit key for the job's name, the same in every process."""
    digest = hashlib.blake2b(job.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _sqlite_file(engine: Engine) -> str | None:
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        return None
    if database.startswith("file:"):
        return None
    return database


@contextmanager
def job_lock(engine: Engine, job: str) -> Iterator[None]:
    """Hold the lock of ``job`` on ``engine``'s log for the block; raise ``JobLockedError`` at once
    when another run holds it."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            key = _key(job)
            taken = connection.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key})
            if not taken.scalar():
                raise JobLockedError(f"another {job} run holds the lock on this log")
            try:
                yield
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                connection.commit()
        return
    path = _sqlite_file(engine)
    if path is None or fcntl is None:
        yield
        return
    descriptor = os.open(f"{path}-{job}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise JobLockedError(f"another {job} run holds the lock on {path}") from None
        try:
            yield
        finally:
            fcntl.flock(descriptor, fcntl.LOCK_UN)
    finally:
        os.close(descriptor)
