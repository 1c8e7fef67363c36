"""How the log writes: idempotent, transactional, and fast for many rows, for every table.

Owns the machinery that :mod:`proplog.store` (decisions and events) and :mod:`proplog.registry`
(model versions, policies, OPE reports) share: validating inputs into their ``*Create`` models
(:func:`coerce`, :func:`coerce_all`), telling a replay from a conflict (:func:`check_same`,
:func:`split_replays`), running a write in its own transaction with a retry after a lost key race
(:func:`run_write`), reading keys in chunks (:func:`chunks`), and the driver-level multi-row
insert (:func:`insert_rows`).

Writes are idempotent on their key (``decision_id``, ``event_id``, model ``version``, policy
``name@version``):

- replaying identical content is a no-op that returns ``WriteResult(created=False)`` and logs
  at INFO;
- replaying different content raises :class:`proplog.errors.ConflictError` naming the key and the
  first differing field.

Each write owns its transaction: it validates everything first, writes, and commits; on any error
it rolls the session back, so nothing is half-written. (It therefore also commits or discards
whatever the caller left pending in the session.) Two writers racing on the same key are safe:
the loser's insert fails on the primary key, its transaction is rolled back, and the write is
retried, now comparing against the winner's row.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import chain
from operator import attrgetter
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from sqlalchemy import Boolean, Connection, Dialect, Table, insert
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from proplog.errors import ConflictError, LogValidationError
from proplog.validation import from_pydantic_error
from proplog.writer_lock import writer_turn

logger = logging.getLogger("proplog.store")
"""Every write reports under the store's name (replays, retries, what was stored), so that one
logging setting covers the whole log, as before this machinery moved out of :mod:`proplog.store`."""

ModelT = TypeVar("ModelT", bound=BaseModel)
ResultT = TypeVar("ResultT")

_IN_CHUNK = 500
"""Keys per ``IN (...)`` query (well below SQLite's bound-parameter limit)."""
_WRITE_ATTEMPTS = 3
"""A write that loses a race on a primary key is retried (twice at most: a batch of many keys can
lose a second race during its first retry)."""
_MAX_PARAMETERS = 999
"""Bound parameters per INSERT statement (SQLite's historical limit; PostgreSQL allows more)."""
_PARAMETER_MARKERS = {"qmark": "?", "format": "%s", "pyformat": "%s"}


@dataclass(frozen=True)
class WriteResult:
    """The outcome of an idempotent write: ``created=False`` means an identical replay, a no-op."""

    created: bool
    key: str


# ---------------------------------------------------------------------------------------------
# Validation and comparison
# ---------------------------------------------------------------------------------------------


def coerce(model: type[ModelT], obj: Any, what: str) -> ModelT:
    """Validate ``obj`` (a ``model`` instance or a mapping) into a fresh ``model`` instance."""
    if isinstance(obj, model):
        data: Any = obj.model_dump()
    elif isinstance(obj, Mapping):
        data = obj
    else:
        raise LogValidationError(
            what or "<record>", f"a {model.__name__} or a mapping", type(obj).__name__
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise from_pydantic_error(exc) from exc


def coerce_all(model: type[ModelT], objs: Sequence[Any], what: str) -> list[ModelT]:
    """Validate every element first (so that a batch is all-or-nothing); paths get ``what[i].``."""
    if isinstance(objs, str | bytes | Mapping):
        raise LogValidationError(what, "a sequence of records", type(objs).__name__)
    out: list[ModelT] = []
    for i, obj in enumerate(objs):
        try:
            out.append(coerce(model, obj, ""))
        except LogValidationError as exc:
            raise exc.with_prefix(f"{what}[{i}].") from exc
    return out


def _first_difference(stored: Any, given: Any, path: str = "") -> tuple[str, Any, Any] | None:
    """The first path where two JSON-like values differ, with both values; ``None`` if equal."""
    if isinstance(stored, Mapping) and isinstance(given, Mapping):
        for key in list(given) + [k for k in stored if k not in given]:
            sub = f"{path}.{key}" if path else str(key)
            if key not in stored or key not in given:
                return sub, stored.get(key, "<missing>"), given.get(key, "<missing>")
            found = _first_difference(stored[key], given[key], sub)
            if found is not None:
                return found
        return None
    if isinstance(stored, list) and isinstance(given, list):
        for i, (a, b) in enumerate(zip(stored, given, strict=False)):
            found = _first_difference(a, b, f"{path}[{i}]")
            if found is not None:
                return found
        if len(stored) != len(given):
            i = min(len(stored), len(given))
            return (
                f"{path}[{i}]",
                stored[i] if i < len(stored) else "<missing>",
                given[i] if i < len(given) else "<missing>",
            )
        return None
    if type(stored) is bool or type(given) is bool:
        return None if type(stored) is type(given) and stored == given else (path, stored, given)
    return None if stored == given else (path, stored, given)


def check_same(
    key_name: str, key: str, stored: Mapping[str, Any], given: Mapping[str, Any]
) -> None:
    """Raise ``ConflictError`` unless ``given`` replays ``stored`` exactly; log the replay."""
    found = _first_difference(stored, given)
    if found is not None:
        field, was, now = found
        raise ConflictError(key_name=key_name, key=key, field=field, stored=was, given=now)
    logger.info("%s %s replayed with identical content; nothing written", key_name, key)


def split_replays(
    records: Sequence[ModelT],
    key_name: str,
    load: Callable[[list[str]], dict[str, ModelT]],
) -> tuple[list[tuple[int, ModelT]], list[WriteResult]]:
    """The new ones of ``records`` (with their index), and a result for each, in input order.

    ``key_name`` is the records' key field, and ``load`` gives the stored records of some keys. A
    record whose key is stored, or came earlier in ``records``, is a replay: it must have the same
    content (else ``ConflictError``) and is not new.
    """
    key_of = attrgetter(key_name)
    known = load(list(dict.fromkeys(key_of(record) for record in records)))
    new: list[tuple[int, ModelT]] = []
    results: list[WriteResult] = []
    for i, record in enumerate(records):
        key = key_of(record)
        earlier = known.get(key)
        if earlier is not None:
            check_same(key_name, key, earlier.model_dump(), record.model_dump())
            results.append(WriteResult(created=False, key=key))
            continue
        known[key] = record
        new.append((i, record))
        results.append(WriteResult(created=True, key=key))
    return new, results


# ---------------------------------------------------------------------------------------------
# Transactions
# ---------------------------------------------------------------------------------------------


def chunks(keys: Sequence[Any]) -> Iterator[Sequence[Any]]:
    """``keys`` in slices small enough for one ``IN (...)`` query each."""
    for start in range(0, len(keys), _IN_CHUNK):
        yield keys[start : start + _IN_CHUNK]


def _begin_write(session: Session) -> None:
    """On SQLite, take the write lock before the first read of a write (``BEGIN IMMEDIATE``).

    A deferred transaction that reads first and writes later cannot be upgraded once another
    connection has committed since its read: SQLite then answers "database is locked" at once,
    without waiting for busy_timeout. Taking the lock first makes concurrent writers queue.
    """
    connection = session.connection()
    if connection.dialect.name != "sqlite":
        return
    driver = connection.connection.driver_connection
    if driver is not None and not driver.in_transaction:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def run_write(session: Session, write: Callable[[], ResultT]) -> ResultT:
    """Run ``write`` and commit; roll back on any error; retry (twice at most) after a key race.

    On a SQLite file each attempt holds this writer's turn (:func:`proplog.writer_lock.
    writer_turn`) from before ``BEGIN IMMEDIATE`` until after its commit or rollback."""
    for attempt in range(1, _WRITE_ATTEMPTS + 1):
        try:
            with writer_turn(session.connection()):
                try:
                    _begin_write(session)
                    result = write()
                    session.commit()
                    return result
                except BaseException:
                    session.rollback()
                    raise
        except IntegrityError:
            if attempt == _WRITE_ATTEMPTS:
                raise
            logger.info("write lost a race on its key; retrying against the stored row")
    raise AssertionError("unreachable")  # pragma: no cover


# ---------------------------------------------------------------------------------------------
# Multi-row inserts
# ---------------------------------------------------------------------------------------------


@lru_cache(maxsize=64)
def _driver_insert_plan(
    dialect: Dialect, table: Table, columns: tuple[str, ...]
) -> tuple[str, str, tuple[tuple[int, Callable[[Any], Any]], ...]] | None:
    """The driver-level ``INSERT INTO table (columns) VALUES`` head, one row's ``(?, ...)``, and
    the bind processor of every column that has one (by position); ``None`` for a driver with
    another parameter style."""
    marker = _PARAMETER_MARKERS.get(dialect.paramstyle)
    if marker is None:
        return None
    quote = dialect.identifier_preparer.quote
    head = f"INSERT INTO {quote(table.name)} ({', '.join(map(quote, columns))}) VALUES "
    row = f"({', '.join([marker] * len(columns))})"
    processors = []
    for i, name in enumerate(columns):
        column_type = table.c[name].type
        if isinstance(column_type, Boolean):
            continue  # a Python bool is what both drivers take (SQLite stores it as 1 or 0)
        process = column_type.dialect_impl(dialect).bind_processor(dialect)
        if process is not None:
            processors.append((i, process))
    return head, row, tuple(processors)


@lru_cache(maxsize=256)
def _multi_row_sql(head: str, row: str, n_rows: int) -> str:
    return head + ", ".join([row] * n_rows)


def insert_rows(
    conn: Connection, table: Table, columns: tuple[str, ...], rows: list[tuple[Any, ...]]
) -> None:
    """Insert ``rows`` (tuples in ``columns`` order): multi-row VALUES on SQLite, else executemany.

    Each value goes through its column type's bind processor, exactly as SQLAlchemy would convert
    it (dates, JSON, packed arrays), and columns without one go straight to the driver:
    SQLAlchemy's per-row parameter handling would cost as much as the rest of a write of a
    decision with a 20-item slate. On SQLite, rows go in statements of up to ``_MAX_PARAMETERS``
    values: one statement step per chunk rather than per row costs about 20% less of the
    database's CPU, and releases Python's GIL once per chunk instead of once per row (measured on
    this project's 2-core machine, 500 decisions of 20 slate items per transaction).
    """
    plan = _driver_insert_plan(conn.dialect, table, columns)
    if plan is None:  # a driver with another parameter style: the generic path
        conn.execute(insert(table), [dict(zip(columns, r, strict=True)) for r in rows])
        return
    head, row, processors = plan
    if processors:
        converted = []
        for values in rows:
            values = list(values)
            for i, process in processors:
                values[i] = process(values[i])
            converted.append(tuple(values))
        rows = converted
    if conn.dialect.name != "sqlite":  # psycopg's executemany pipelines the rows already
        conn.exec_driver_sql(head + row, rows)
        return
    per_statement = max(1, _MAX_PARAMETERS // len(columns))
    for start in range(0, len(rows), per_statement):
        chunk = rows[start : start + per_statement]
        sql = _multi_row_sql(head, row, len(chunk))
        conn.exec_driver_sql(sql, tuple(chain.from_iterable(chunk)))


__all__ = [
    "WriteResult",
    "check_same",
    "chunks",
    "coerce",
    "coerce_all",
    "insert_rows",
    "run_write",
    "split_replays",
]
