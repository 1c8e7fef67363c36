"""The store: idempotent writes and point-in-time reads of the propensity log.

Owns every write to the log's tables. The functions are keyword-only
(``record_decision(*, session, decision)``) and each write function owns its transaction: it
validates everything first, writes, and commits; on any error it rolls the session back, so
nothing is half-written. (It therefore also commits or discards whatever the caller left pending
in the session.)

Writes are idempotent on their key (``decision_id``, ``event_id``, model ``version``, policy
``name@version``):

- replaying identical content is a no-op that returns ``WriteResult(created=False)`` and logs
  at INFO;
- replaying different content raises :class:`proplog.errors.ConflictError` naming the key and the
  first differing field.

Two writers racing on the same key are safe: the loser's insert fails on the primary key, its
transaction is rolled back, and the write is retried once, now comparing against the winner's
row.

Inputs are the ``*Create`` models of :mod:`proplog.schema` or plain mappings; either way they are
validated again here, and any problem is raised as :class:`proplog.errors.LogValidationError`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from itertools import chain
from operator import attrgetter
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from sqlalchemy import Boolean, Connection, Dialect, Table, and_, insert, select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from proplog.errors import ConflictError, LogValidationError, UnknownDecisionError
from proplog.schema import (
    Decision,
    DecisionCreate,
    Event,
    EventCreate,
    ModelVersion,
    OpeReport,
    Policy,
    SlateItem,
    SlateItemCreate,
)
from proplog.validation import (
    check_aware_utc,
    check_name,
    check_uuid,
    from_pydantic_error,
    to_json_value,
)
from proplog.writer_lock import writer_turn

logger = logging.getLogger(__name__)

DecisionInput = DecisionCreate | Mapping[str, Any]
EventInput = EventCreate | Mapping[str, Any]
ModelT = TypeVar("ModelT", bound=BaseModel)
ResultT = TypeVar("ResultT")

_IN_CHUNK = 500
"""Keys per ``IN (...)`` query (well below SQLite's bound-parameter limit)."""
_WRITE_ATTEMPTS = 3
"""A write that loses a race on a primary key is retried (twice at most: a batch of many keys can
lose a second race during its first retry)."""
_NAME_LENGTH = 256

_DECISION: Table = Decision.__table__  # type: ignore[attr-defined]
_SLATE_ITEM: Table = SlateItem.__table__  # type: ignore[attr-defined]
_EVENT: Table = Event.__table__  # type: ignore[attr-defined]
_MODEL_VERSION: Table = ModelVersion.__table__  # type: ignore[attr-defined]
_POLICY: Table = Policy.__table__  # type: ignore[attr-defined]
_OPE_REPORT: Table = OpeReport.__table__  # type: ignore[attr-defined]

_DECISION_FIELDS: tuple[str, ...] = tuple(
    name for name in DecisionCreate.model_fields if name != "slate"
)
_SLATE_FIELDS: tuple[str, ...] = tuple(SlateItemCreate.model_fields)
_SLATE_COLUMNS: tuple[str, ...] = ("decision_id", *_SLATE_FIELDS)
if set(_SLATE_COLUMNS) != set(_SLATE_ITEM.columns.keys()):  # pragma: no cover
    raise RuntimeError(f"slate_item columns {_SLATE_ITEM.columns.keys()} != {_SLATE_COLUMNS}")
_slate_values = attrgetter(*_SLATE_FIELDS)
_DECISION_COLUMNS: tuple[str, ...] = (*_DECISION_FIELDS, "k")
if set(_DECISION_COLUMNS) != set(_DECISION.columns.keys()):  # pragma: no cover
    raise RuntimeError(f"decision columns {_DECISION.columns.keys()} != {_DECISION_COLUMNS}")
_decision_values = attrgetter(*_DECISION_FIELDS)
_PARAMETER_MARKERS = {"qmark": "?", "format": "%s", "pyformat": "%s"}


@dataclass(frozen=True)
class WriteResult:
    """The outcome of an idempotent write: ``created=False`` means an identical replay, a no-op."""

    created: bool
    key: str


# ---------------------------------------------------------------------------------------------
# Validation and comparison helpers
# ---------------------------------------------------------------------------------------------


def _coerce(model: type[ModelT], obj: Any, what: str) -> ModelT:
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


def _coerce_all(model: type[ModelT], objs: Sequence[Any], what: str) -> list[ModelT]:
    """Validate every element first (so that a batch is all-or-nothing); paths get ``what[i].``."""
    if isinstance(objs, str | bytes | Mapping):
        raise LogValidationError(what, "a sequence of records", type(objs).__name__)
    out: list[ModelT] = []
    for i, obj in enumerate(objs):
        try:
            out.append(_coerce(model, obj, ""))
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


def _check_same(
    key_name: str, key: str, stored: Mapping[str, Any], given: Mapping[str, Any]
) -> None:
    """Raise ``ConflictError`` unless ``given`` replays ``stored`` exactly; log the replay."""
    found = _first_difference(stored, given)
    if found is not None:
        field, was, now = found
        raise ConflictError(key_name=key_name, key=key, field=field, stored=was, given=now)
    logger.info("%s %s replayed with identical content; nothing written", key_name, key)


def _chunks(keys: Sequence[Any]) -> Iterator[Sequence[Any]]:
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


def _run_write(session: Session, write: Callable[[], ResultT]) -> ResultT:
    """Run ``write`` and commit; roll back on any error; retry once after a lost key race.

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
# Decisions
# ---------------------------------------------------------------------------------------------


def _load_decisions(session: Session, ids: Sequence[str]) -> dict[str, DecisionCreate]:
    conn = session.connection()
    rows: dict[str, dict[str, Any]] = {}
    for chunk in _chunks(ids):
        found: list[str] = []
        for row in conn.execute(select(_DECISION).where(_DECISION.c.decision_id.in_(chunk))):
            data = dict(row._mapping)
            data.pop("k")
            data["slate"] = []
            rows[data["decision_id"]] = data
            found.append(data["decision_id"])
        if not found:
            continue
        # Only the decisions seen above: on PostgreSQL (READ COMMITTED) each statement has its own
        # snapshot, so a decision committed in between would show slate items without its row.
        slate_rows = conn.execute(
            select(_SLATE_ITEM)
            .where(_SLATE_ITEM.c.decision_id.in_(found))
            .order_by(_SLATE_ITEM.c.decision_id, _SLATE_ITEM.c.position)
        )
        for row in slate_rows:
            item = dict(row._mapping)
            rows[item.pop("decision_id")]["slate"].append(item)
    return {key: DecisionCreate.model_validate(data) for key, data in rows.items()}


_MAX_PARAMETERS = 999
"""Bound parameters per INSERT statement (SQLite's historical limit; PostgreSQL allows more)."""


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


def _insert_rows(
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


def _write_decisions(session: Session, decisions: Sequence[DecisionCreate]) -> list[WriteResult]:
    ids = list(dict.fromkeys(d.decision_id for d in decisions))
    known: dict[str, DecisionCreate] = _load_decisions(session, ids)
    new: list[DecisionCreate] = []
    results: list[WriteResult] = []
    for d in decisions:
        key = d.decision_id
        earlier = known.get(key)
        if earlier is not None:
            _check_same("decision_id", key, earlier.model_dump(), d.model_dump())
            results.append(WriteResult(created=False, key=key))
            continue
        known[key] = d
        new.append(d)
        results.append(WriteResult(created=True, key=key))
    if new:
        conn = session.connection()
        decision_rows = []
        slate_rows = []
        # Key order: two PostgreSQL transactions inserting overlapping keys then wait on each
        # other in the same order and cannot deadlock.
        new.sort(key=lambda d: d.decision_id)
        for d in new:
            decision_rows.append((*_decision_values(d), len(d.slate)))
            key = d.decision_id
            slate_rows.extend((key, *_slate_values(s)) for s in d.slate)
        _insert_rows(conn, _DECISION, _DECISION_COLUMNS, decision_rows)
        _insert_rows(conn, _SLATE_ITEM, _SLATE_COLUMNS, slate_rows)
        logger.debug("recorded %d decisions with %d slate items", len(new), len(slate_rows))
    return results


def validated_decision(decision: DecisionInput) -> DecisionCreate:
    """``decision`` checked against every rule that needs no database, as a fresh model."""
    return _coerce(DecisionCreate, decision, "decision")


def validated_event(event: EventInput) -> EventCreate:
    """``event`` checked against every rule that needs no database, as a fresh model."""
    return _coerce(EventCreate, event, "event")


def record_decision(*, session: Session, decision: DecisionInput) -> WriteResult:
    """Record a decision and its whole slate in one transaction (idempotent on decision_id).

    Raises ``LogValidationError`` for invalid input and ``ConflictError`` when the decision_id is
    stored with different content.
    """
    d = _coerce(DecisionCreate, decision, "decision")
    return _run_write(session, lambda: _write_decisions(session, [d]))[0]


def record_decisions(*, session: Session, decisions: Sequence[DecisionInput]) -> list[WriteResult]:
    """Record many decisions in one transaction: all of them, or none.

    Every decision is validated before anything is written; error paths start with
    ``decisions[i].``. Results are in input order.
    """
    validated = _coerce_all(DecisionCreate, decisions, "decisions")
    if not validated:
        return []
    return _run_write(session, lambda: _write_decisions(session, validated))


def get_decision(*, session: Session, decision_id: str) -> DecisionCreate | None:
    """The stored decision with its slate ordered by position, or ``None``."""
    try:
        key = check_uuid(decision_id, "decision_id")
    except LogValidationError:
        return None
    return _load_decisions(session, [key]).get(key)


# ---------------------------------------------------------------------------------------------
# Events
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _DecisionRef:
    user_id: str
    slate: dict[int, int]  # position -> item_id


def _load_decision_refs(session: Session, ids: Sequence[str]) -> dict[str, _DecisionRef]:
    conn = session.connection()
    refs: dict[str, _DecisionRef] = {}
    for chunk in _chunks(ids):
        stmt = (
            select(
                _DECISION.c.decision_id,
                _DECISION.c.user_id,
                _SLATE_ITEM.c.position,
                _SLATE_ITEM.c.item_id,
            )
            .select_from(
                _DECISION.outerjoin(
                    _SLATE_ITEM, _SLATE_ITEM.c.decision_id == _DECISION.c.decision_id
                )
            )
            .where(_DECISION.c.decision_id.in_(chunk))
        )
        for decision_id, user_id, position, item_id in conn.execute(stmt):
            ref = refs.setdefault(decision_id, _DecisionRef(user_id=user_id, slate={}))
            if position is not None:
                ref.slate[position] = item_id
    return refs


def _load_events(session: Session, ids: Sequence[str]) -> dict[str, EventCreate]:
    conn = session.connection()
    found: dict[str, EventCreate] = {}
    for chunk in _chunks(ids):
        for row in conn.execute(select(_EVENT).where(_EVENT.c.event_id.in_(chunk))):
            found[row.event_id] = EventCreate.model_validate(dict(row._mapping))
    return found


def _check_attribution(e: EventCreate, ref: _DecisionRef | None, prefix: str) -> None:
    """An attributed event must point at a stored decision of the same user, and at its slate."""
    assert e.decision_id is not None
    if ref is None:
        raise UnknownDecisionError(e.decision_id, where=f"{prefix}decision_id")
    if e.user_id != ref.user_id:
        raise LogValidationError(
            f"{prefix}user_id",
            f"the user_id of decision {e.decision_id} ({ref.user_id!r})",
            e.user_id,
        )
    if e.position is None:
        return
    if e.position not in ref.slate:
        raise LogValidationError(
            f"{prefix}position",
            f"a position of decision {e.decision_id}'s slate (0..{len(ref.slate) - 1})",
            e.position,
        )
    shown = ref.slate[e.position]
    if e.item_id != shown:
        raise LogValidationError(
            f"{prefix}item_id",
            f"the item at position {e.position} of decision {e.decision_id} ({shown})",
            e.item_id,
        )


def _write_events(
    session: Session, events: Sequence[EventCreate], *, batch: bool
) -> list[WriteResult]:
    ids = list(dict.fromkeys(e.event_id for e in events))
    known: dict[str, EventCreate] = _load_events(session, ids)
    new: list[tuple[int, EventCreate]] = []
    results: list[WriteResult] = []
    for i, e in enumerate(events):
        key = e.event_id
        earlier = known.get(key)
        if earlier is not None:
            _check_same("event_id", key, earlier.model_dump(), e.model_dump())
            results.append(WriteResult(created=False, key=key))
            continue
        known[key] = e
        new.append((i, e))
        results.append(WriteResult(created=True, key=key))
    if not new:
        return results
    wanted = list(dict.fromkeys(e.decision_id for _, e in new if e.decision_id is not None))
    refs = _load_decision_refs(session, wanted)
    for i, e in new:
        if e.decision_id is not None:
            _check_attribution(e, refs.get(e.decision_id), f"events[{i}]." if batch else "")
    rows = sorted((e.model_dump() for _, e in new), key=lambda row: row["event_id"])
    session.connection().execute(insert(_EVENT), rows)
    logger.debug("recorded %d events", len(new))
    return results


def record_event(*, session: Session, event: EventInput) -> WriteResult:
    """Record one event (idempotent on event_id).

    Raises ``UnknownDecisionError`` when its decision_id is not stored, ``LogValidationError``
    when its position is not in that decision's slate, its item differs from the slate's item at
    that position, or its user differs from the decision's, and ``ConflictError`` when the
    event_id is stored with different content.
    """
    e = _coerce(EventCreate, event, "event")
    return _run_write(session, lambda: _write_events(session, [e], batch=False))[0]


def record_events(*, session: Session, events: Sequence[EventInput]) -> list[WriteResult]:
    """Record many events in one transaction: all of them, or none (paths start ``events[i].``)."""
    validated = _coerce_all(EventCreate, events, "events")
    if not validated:
        return []
    return _run_write(session, lambda: _write_events(session, validated, batch=True))


def record_batch(
    *,
    session: Session,
    decisions: Sequence[DecisionInput] = (),
    events: Sequence[EventInput] = (),
) -> tuple[list[WriteResult], list[WriteResult]]:
    """Record decisions, then events, in one transaction with one commit: all of them, or none.

    Events may point at decisions of the same batch. Error paths start with ``decisions[i].`` or
    ``events[i].``. Results are in input order, per kind.
    """
    return record_validated_batch(
        session=session,
        decisions=_coerce_all(DecisionCreate, decisions, "decisions"),
        events=_coerce_all(EventCreate, events, "events"),
    )


def record_validated_batch(
    *,
    session: Session,
    decisions: Sequence[DecisionCreate],
    events: Sequence[EventCreate],
) -> tuple[list[WriteResult], list[WriteResult]]:
    """:func:`record_batch` for records that are already validated ``*Create`` models.

    For callers that validated each record when they accepted it (the batch writer), so that a
    batch is not validated twice. The models must not have been changed since.
    """
    if not decisions and not events:
        return [], []

    def write() -> tuple[list[WriteResult], list[WriteResult]]:
        written = _write_decisions(session, decisions) if decisions else []
        return written, _write_events(session, events, batch=True) if events else []

    return _run_write(session, write)


def get_event(*, session: Session, event_id: str) -> EventCreate | None:
    """The stored event, or ``None``."""
    return _load_events(session, [event_id]).get(event_id)


def user_history(
    *, session: Session, user_id: str, before: datetime, limit: int | None = None
) -> list[EventCreate]:
    """The user's events strictly before ``before``, oldest first (the point-in-time rule).

    With ``limit``, only the most recent ``limit`` of them (still oldest first). Events at the same
    instant are ordered by event_id.
    """
    before = check_aware_utc(before, "before")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise LogValidationError("limit", "None or an integer >= 0", limit)
    t = _EVENT
    stmt = select(t).where(and_(t.c.user_id == user_id, t.c.created_at < before))
    if limit is None:
        stmt = stmt.order_by(t.c.created_at, t.c.event_id)
    else:
        stmt = stmt.order_by(t.c.created_at.desc(), t.c.event_id.desc()).limit(limit)
    events = [
        EventCreate.model_validate(dict(row._mapping)) for row in session.connection().execute(stmt)
    ]
    if limit is not None:
        events.reverse()
    return events


# ---------------------------------------------------------------------------------------------
# Model versions, policies, OPE reports
# ---------------------------------------------------------------------------------------------


def _json_object(value: Any, field: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise LogValidationError(field, "a JSON object (mapping)", value)
    return to_json_value(dict(value), field)


def _record_keyed(
    session: Session,
    table: Table,
    key: dict[str, str],
    content: dict[str, Any],
    *,
    key_name: str,
    key_text: str,
) -> WriteResult:
    """Insert ``key | content`` (plus created_at) unless the key exists with the same content."""

    def write() -> WriteResult:
        where = and_(*(table.c[name] == value for name, value in key.items()))
        columns = [table.c[name] for name in content]
        stored = session.connection().execute(select(*columns).where(where)).first()
        if stored is not None:
            _check_same(key_name, key_text, dict(stored._mapping), content)
            return WriteResult(created=False, key=key_text)
        row = {**key, **content, "created_at": datetime.now(UTC)}
        session.connection().execute(insert(table), [row])
        return WriteResult(created=True, key=key_text)

    return _run_write(session, write)


def record_model_version(
    *,
    session: Session,
    version: str,
    kind: str,
    params: Mapping[str, Any],
    metrics: Mapping[str, Any],
    path: str | None = None,
) -> WriteResult:
    """Register a model version (idempotent on ``version``)."""
    check_name(version, "version", max_length=_NAME_LENGTH)
    check_name(kind, "kind", max_length=_NAME_LENGTH)
    if path is not None and not isinstance(path, str):
        raise LogValidationError("path", "a string or None", path)
    content = {
        "kind": kind,
        "params": _json_object(params, "params"),
        "metrics": _json_object(metrics, "metrics"),
        "path": path,
    }
    return _record_keyed(
        session,
        _MODEL_VERSION,
        {"version": version},
        content,
        key_name="version",
        key_text=version,
    )


def record_policy(
    *, session: Session, name: str, version: str, params: Mapping[str, Any]
) -> WriteResult:
    """Register a policy version (idempotent on ``(name, version)``; key ``name@version``)."""
    check_name(name, "name", max_length=_NAME_LENGTH)
    check_name(version, "version", max_length=_NAME_LENGTH)
    return _record_keyed(
        session,
        _POLICY,
        {"name": name, "version": version},
        {"params": _json_object(params, "params")},
        key_name="policy",
        key_text=f"{name}@{version}",
    )


def record_ope_report(
    *,
    session: Session,
    candidate: str,
    baseline: str | None,
    payload: Mapping[str, Any],
    decision: str | None,
    reasons: Sequence[str],
) -> int:
    """Store an OPE report (append-only, not idempotent) and return its id.

    ``payload`` must be JSON with finite numbers (numpy values are converted); use ``None``
    where a number is undefined.
    """
    check_name(candidate, "candidate", max_length=_NAME_LENGTH)
    if baseline is not None:
        check_name(baseline, "baseline", max_length=_NAME_LENGTH)
    if decision is not None and not isinstance(decision, str):
        raise LogValidationError("decision", "a string or None", decision)
    if isinstance(reasons, str | bytes) or not isinstance(reasons, Sequence):
        raise LogValidationError("reasons", "a sequence of strings", reasons)
    row = {
        "created_at": datetime.now(UTC),
        "candidate": candidate,
        "baseline": baseline,
        "payload": _json_object(payload, "payload"),
        "decision": decision,
        "reasons": to_json_value(list(reasons), "reasons"),
    }

    def write() -> int:
        inserted = session.connection().execute(insert(_OPE_REPORT).values(**row))
        return int(inserted.inserted_primary_key[0])

    report_id = _run_write(session, write)
    logger.info("stored OPE report %d for candidate %s", report_id, candidate)
    return report_id


__all__ = [
    "WriteResult",
    "get_decision",
    "get_event",
    "record_batch",
    "record_decision",
    "record_decisions",
    "record_event",
    "record_events",
    "record_model_version",
    "record_ope_report",
    "record_policy",
    "record_validated_batch",
    "user_history",
    "validated_decision",
    "validated_event",
]
