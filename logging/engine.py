"""Database engines for the propensity log: SQLite (the default) or PostgreSQL, chosen by URL.

Owns how a connection is opened. For SQLite every new connection runs

- ``PRAGMA journal_mode=WAL``: readers do not block the writer;
- ``PRAGMA synchronous=FULL``: a committed (acknowledged) decision is on disk;
- ``PRAGMA foreign_keys=ON``: slate items and events must point at stored decisions;
- ``PRAGMA busy_timeout=5000``: a writer waits up to 5 s for another one instead of failing.

PostgreSQL URLs (``postgresql+psycopg://user:password@host:5432/db``; plain ``postgresql://``
means the same driver, psycopg 3) get a connection pool sized for a threaded API server
(:data:`POSTGRES_POOL`), checked before use so that a restarted server costs one retry and not an
error. No other setting differs: the store's code is the same for both back ends.
"""

from __future__ import annotations

import logging
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


def _set_sqlite_pragmas(dbapi_connection: Any, _connection_record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        for pragma in SQLITE_PRAGMAS:
            cursor.execute(pragma)
    finally:
        cursor.close()


def _is_in_memory(database: str | None) -> bool:
    return not database or database == ":memory:" or "mode=memory" in database


def shares_one_connection(engine: Engine) -> bool:
    """True for an in-memory SQLite engine: every session uses the same connection, so only
    one thread may use the engine at a time (no separate writer thread)."""
    return engine.dialect.name == "sqlite" and _is_in_memory(engine.url.database)


def make_engine(url: str, *, echo: bool = False) -> Engine:
    """Create an engine for ``url``; for SQLite, make the file's folder and set the pragmas."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        engine = create_engine(url, echo=echo, **POSTGRES_POOL)
        logger.debug("%s engine for %s", parsed.get_backend_name(), parsed.render_as_string())
        return engine

    database = parsed.database
    kwargs: dict[str, Any] = {"connect_args": {"check_same_thread": False}}
    if _is_in_memory(database):
        # One shared connection, or every pooled connection would see its own empty database.
        kwargs["poolclass"] = StaticPool
    elif database is not None and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, echo=echo, **kwargs)
    event.listen(engine, "connect", _set_sqlite_pragmas)
    logger.debug("SQLite engine for %s with %s", database, ", ".join(SQLITE_PRAGMAS))
    return engine


def init_db(engine: Engine) -> None:
    """Create the log's tables and indexes when missing (idempotent)."""
    SQLModel.metadata.create_all(engine, tables=log_tables())
