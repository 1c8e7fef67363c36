"""Database engines for the propensity log: SQLite (the default) or PostgreSQL, chosen by URL.

Owns how a connection is opened. For SQLite every new connection runs

- ``PRAGMA journal_mode=WAL``: readers do not block the writer;
- ``PRAGMA synchronous=FULL``: a committed (acknowledged) decision is on disk;
- ``PRAGMA foreign_keys=ON``: slate items and events must point at stored decisions;
- ``PRAGMA busy_timeout=5000``: a writer waits up to 5 s for another one instead of failing
  (``make_engine(timeout_s=...)`` sets another bound, as the API does from its settings).

PostgreSQL URLs (``postgresql+psycopg://user:password@host:5432/db``; plain ``postgresql://``
means the same driver, psycopg 3) get a connection pool sized for a threaded API server
(:data:`POSTGRES_POOL`), checked before use so that a restarted server costs one retry and not an
error; ``timeout_s`` there bounds the wait for a new connection (libpq's ``connect_timeout``, at
least 2 s) and for a pooled one. No other setting differs: the store's code is the same for both
back ends.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.pool import StaticPool
from sqlmodel import SQLModel

from proplog.schema import log_tables

logger = logging.getLogger(__name__)

DATABASE_URL_ENV = "LOOPBREAK_DATABASE_URL"
DEFAULT_DATABASE_URL = "sqlite:///./loopbreak.db"

SQLITE_PRAGMAS: tuple[str, ...] = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=FULL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA busy_timeout=5000",
)


POSTGRES_POOL: dict[str, Any] = {
    "pool_size": 10,
    "max_overflow": 20,
    "pool_timeout": 30,
    "pool_recycle": 1800,
    "pool_pre_ping": True,
}
"""Pool settings for server databases: 10 kept connections, up to 20 more under load."""


def default_database_url() -> str:
    """``$LOOPBREAK_DATABASE_URL`` if set, else ``sqlite:///./loopbreak.db``."""
    return os.environ.get(DATABASE_URL_ENV) or DEFAULT_DATABASE_URL


def _sqlite_pragmas(timeout_s: float | None) -> tuple[str, ...]:
    """:data:`SQLITE_PRAGMAS`, with the busy timeout ``timeout_s`` seconds when given."""
    if timeout_s is None:
        return SQLITE_PRAGMAS
    busy = f"PRAGMA busy_timeout={max(0, round(timeout_s * 1000))}"
    return tuple(busy if p.startswith("PRAGMA busy_timeout") else p for p in SQLITE_PRAGMAS)


def _pragma_setter(pragmas: tuple[str, ...]) -> Any:
    def _set_sqlite_pragmas(dbapi_connection: Any, _connection_record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            for pragma in pragmas:
                cursor.execute(pragma)
        finally:
            cursor.close()

    return _set_sqlite_pragmas


def _is_in_memory(database: str | None) -> bool:
    return not database or database == ":memory:" or "mode=memory" in database


def shares_one_connection(engine: Engine) -> bool:
    """True for an in-memory SQLite engine: every session uses the same connection, so only
    one thread may use the engine at a time (no separate writer thread)."""
    return engine.dialect.name == "sqlite" and _is_in_memory(engine.url.database)


def is_sqlite_file(engine: Engine) -> bool:
    """True for a SQLite engine on a file (not in memory): one that separate connections and
    threads can each open."""
    return engine.dialect.name == "sqlite" and not _is_in_memory(engine.url.database)


def make_engine(url: str, *, echo: bool = False, timeout_s: float | None = None) -> Engine:
    """Create an engine for ``url``; for SQLite, make the file's folder and set the pragmas.

    ``timeout_s`` bounds how long a statement waits for the database: SQLite's busy timeout
    (instead of 5 s), or PostgreSQL's connect and pool timeouts (instead of libpq's none and
    30 s); past it, SQLAlchemy raises ``OperationalError`` (or its ``TimeoutError``)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        pool = dict(POSTGRES_POOL)
        if timeout_s is not None:
            pool["pool_timeout"] = timeout_s
            pool["connect_args"] = {"connect_timeout": max(2, math.ceil(timeout_s))}
        engine = create_engine(url, echo=echo, **pool)
        logger.debug("%s engine for %s", parsed.get_backend_name(), parsed.render_as_string())
        return engine

    database = parsed.database
    connect_args: dict[str, Any] = {"check_same_thread": False}
    if timeout_s is not None:
        connect_args["timeout"] = timeout_s
    kwargs: dict[str, Any] = {"connect_args": connect_args}
    if _is_in_memory(database):
        # One shared connection, or every pooled connection would see its own empty database.
        kwargs["poolclass"] = StaticPool
    elif database is not None and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, echo=echo, **kwargs)
    pragmas = _sqlite_pragmas(timeout_s)
    event.listen(engine, "connect", _pragma_setter(pragmas))
    logger.debug("SQLite engine for %s with %s", database, ", ".join(pragmas))
    return engine


def init_db(engine: Engine) -> None:
    """Create the log's tables and indexes when missing (idempotent)."""
    SQLModel.metadata.create_all(engine, tables=log_tables())
