"""The store: the log's decisions and events, written idempotently and read point in time.

Owns the writes of decisions (with their slates) and events, singly or in batches
(``record_decision``, ``record_events``, ``record_batch``, ...), and their reads: ``get_decision``,
``get_event`` and the point-in-time ``user_history``. The functions are keyword-only
(``record_decision(*, session, decision)``). A decision is idempotent on ``decision_id`` and an
event on ``event_id``; each write owns its transaction and is retried after a lost key race, as
:mod:`proplog.writes` describes. Model versions, policies and OPE reports are in
:mod:`proplog.registry`.

Inputs are the ``*Create`` models of :mod:`proplog.schema` or plain mappings; either way they are
validated again here, and any problem is raised as :class:`proplog.errors.LogValidationError`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from operator import attrgetter
from typing import Any

from sqlalchemy import Connection, Engine, Table, and_, bindparam, insert, select, union_all
from sqlmodel import Session

from proplog.activation import (
    ActivationConflictError,
    checked_deferral,
    checked_deferrals,
    write_deferrals,
)
from proplog.errors import LogValidationError, UnknownDecisionError
from proplog.schema import (
    Decision,
    DecisionActivation,
    DecisionCreate,
    Event,
    EventCreate,
    SlateItem,
    SlateItemCreate,
)
from proplog.validation import check_aware_utc, check_uuid
from proplog.writes import WriteResult, chunks, coerce, coerce_all, run_write, split_replays
from proplog.writes import insert_rows as _insert_rows  # a name of this module: tests replace it

logger = logging.getLogger(__name__)

DecisionInput = DecisionCreate | Mapping[str, Any]
EventInput = EventCreate | Mapping[str, Any]

_DECISION: Table = Decision.__table__  # type: ignore[attr-defined]
_SLATE_ITEM: Table = SlateItem.__table__  # type: ignore[attr-defined]
_EVENT: Table = Event.__table__  # type: ignore[attr-defined]
_ACTIVATION: Table = DecisionActivation.__table__  # type: ignore[attr-defined]


def _columns_of(table: Table, columns: tuple[str, ...]) -> tuple[str, ...]:
    """``columns``, checked to be exactly ``table``'s (rows are written as tuples in this order)."""
    if set(columns) != set(table.columns.keys()):  # pragma: no cover
        raise RuntimeError(f"{table.name} columns {table.columns.keys()} != {columns}")
    return columns


_DECISION_FIELDS: tuple[str, ...] = tuple(
    name for name in DecisionCreate.model_fields if name != "slate"
)
_SLATE_FIELDS: tuple[str, ...] = tuple(SlateItemCreate.model_fields)
_SLATE_COLUMNS = _columns_of(_SLATE_ITEM, ("decision_id", *_SLATE_FIELDS))
_slate_values = attrgetter(*_SLATE_FIELDS)
_DECISION_COLUMNS = _columns_of(_DECISION, (*_DECISION_FIELDS, "k"))
_decision_values = attrgetter(*_DECISION_FIELDS)


# ---------------------------------------------------------------------------------------------
# Decisions
# ---------------------------------------------------------------------------------------------


def _load_decisions(session: Session, ids: Sequence[str]) -> dict[str, DecisionCreate]:
    conn = session.connection()
    rows: dict[str, dict[str, Any]] = {}
    for chunk in chunks(ids):
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


def _write_decisions(
    session: Session,
    decisions: Sequence[DecisionCreate],
    deferred_until: Sequence[datetime | None],
    new_keys: frozenset[str] = frozenset(),
) -> list[WriteResult]:
    """Write the new ones of ``decisions``; ``deferred_until`` (aligned, checked) holds each one's
    activation deadline, None for a decision shown when made (:mod:`proplog.activation`).
    ``new_keys``: ids the caller just made, not looked up (an insert that meets one fails)."""

    def load(ids: list[str]) -> dict[str, DecisionCreate]:
        wanted = [key for key in ids if key not in new_keys] if new_keys else ids
        return _load_decisions(session, wanted) if wanted else {}

    new, results = split_replays(decisions, "decision_id", load)
    if new:
        conn = session.connection()
        decision_rows = []
        slate_rows = []
        # Key order: two PostgreSQL transactions inserting overlapping keys then wait on each
        # other in the same order and cannot deadlock.
        for _, d in sorted(new, key=lambda pair: pair[1].decision_id):
            decision_rows.append((*_decision_values(d), len(d.slate)))
            key = d.decision_id
            slate_rows.extend((key, *_slate_values(s)) for s in d.slate)
        _insert_rows(conn, _DECISION, _DECISION_COLUMNS, decision_rows)
        _insert_rows(conn, _SLATE_ITEM, _SLATE_COLUMNS, slate_rows)
        logger.debug("recorded %d decisions with %d slate items", len(new), len(slate_rows))
    write_deferrals(session.connection(), decisions, deferred_until, new, results)
    return results


def validated_decision(decision: DecisionInput) -> DecisionCreate:
    """``decision`` checked against every rule that needs no database, as a fresh model."""
    return coerce(DecisionCreate, decision, "decision")


def validated_event(event: EventInput) -> EventCreate:
    """``event`` checked against every rule that needs no database, as a fresh model."""
    return coerce(EventCreate, event, "event")


def record_decision(
    *, session: Session, decision: DecisionInput, deferred_until: datetime | None = None
) -> WriteResult:
    """Record a decision and its whole slate in one transaction (idempotent on decision_id).

    ``deferred_until``: the decision is deferred, and counts as shown only once activated before
    this deadline (:mod:`proplog.activation`); its activation row is written in the same
    transaction. Raises ``LogValidationError`` for invalid input and ``ConflictError`` when the
    decision_id is stored with different content, or deferred when this one is not (or the
    other way round; the field ``deferred``).
    """
    d = coerce(DecisionCreate, decision, "decision")
    until = [checked_deferral(d, deferred_until)]
    return run_write(session, lambda: _write_decisions(session, [d], until))[0]


def record_decisions(*, session: Session, decisions: Sequence[DecisionInput]) -> list[WriteResult]:
    """Record many decisions in one transaction: all of them, or none.

    Every decision is validated before anything is written; error paths start with
    ``decisions[i].``. Results are in input order.
    """
    validated = coerce_all(DecisionCreate, decisions, "decisions")
    return record_validated_batch(session=session, decisions=validated, events=())[0]


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
    shown: bool = True  # False: deferred and not activated (proplog.activation)


def _load_decision_refs(session: Session, ids: Sequence[str]) -> dict[str, _DecisionRef]:
    conn = session.connection()
    refs: dict[str, _DecisionRef] = {}
    for chunk in chunks(ids):
        stmt = (
            select(
                _DECISION.c.decision_id,
                _DECISION.c.user_id,
                _SLATE_ITEM.c.position,
                _SLATE_ITEM.c.item_id,
                _ACTIVATION.c.decision_id.is_(None) | _ACTIVATION.c.activated_at.is_not(None),
            )
            .select_from(
                _DECISION.outerjoin(
                    _SLATE_ITEM, _SLATE_ITEM.c.decision_id == _DECISION.c.decision_id
                ).outerjoin(_ACTIVATION, _ACTIVATION.c.decision_id == _DECISION.c.decision_id)
            )
            .where(_DECISION.c.decision_id.in_(chunk))
        )
        for decision_id, user_id, position, item_id, shown in conn.execute(stmt):
            ref = refs.setdefault(
                decision_id, _DecisionRef(user_id=user_id, slate={}, shown=bool(shown))
            )
            if position is not None:
                ref.slate[position] = item_id
    return refs


def _load_events(session: Session, ids: Sequence[str]) -> dict[str, EventCreate]:
    conn = session.connection()
    found: dict[str, EventCreate] = {}
    for chunk in chunks(ids):
        for row in conn.execute(select(_EVENT).where(_EVENT.c.event_id.in_(chunk))):
            found[row.event_id] = EventCreate.model_validate(dict(row._mapping))
    return found


def _check_attribution(e: EventCreate, ref: _DecisionRef | None, prefix: str) -> None:
    """An attributed event must point at a stored decision of the same user, shown (not deferred,
    or activated), and at its slate."""
    assert e.decision_id is not None
    if ref is None:
        raise UnknownDecisionError(e.decision_id, where=f"{prefix}decision_id")
    if not ref.shown:
        raise ActivationConflictError.not_activated(e.decision_id, where=f"{prefix}decision_id")
    if e.user_id != ref.user_id:
        raise LogValidationError(
            f"{prefix}user_id",
            f"the user_id of decision {e.decision_id} ({ref.user_id!r})",
            e.user_id,
        )
    if e.position is None:
        if e.item_id not in ref.slate.values():
            raise LogValidationError(
                f"{prefix}item_id",
                f"an item of decision {e.decision_id}'s slate ({sorted(ref.slate.values())}) "
                "when no position is given",
                e.item_id,
            )
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
    new, results = split_replays(events, "event_id", lambda ids: _load_events(session, ids))
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

    Raises ``UnknownDecisionError`` when its decision_id is not stored,
    ``proplog.activation.ActivationConflictError`` when that decision is deferred and not
    activated, ``LogValidationError``
    when its position is not in that decision's slate, its item differs from the slate's item at
    that position (or, without a position, is not in the slate at all), or its user differs from
    the decision's, and ``ConflictError`` when the
    event_id is stored with different content.
    """
    e = coerce(EventCreate, event, "event")
    return run_write(session, lambda: _write_events(session, [e], batch=False))[0]


def record_events(*, session: Session, events: Sequence[EventInput]) -> list[WriteResult]:
    """Record many events in one transaction: all of them, or none (paths start ``events[i].``)."""
    validated = coerce_all(EventCreate, events, "events")
    return record_validated_batch(session=session, decisions=(), events=validated)[1]


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
        decisions=coerce_all(DecisionCreate, decisions, "decisions"),
        events=coerce_all(EventCreate, events, "events"),
    )


def record_validated_batch(
    *,
    session: Session,
    decisions: Sequence[DecisionCreate],
    events: Sequence[EventCreate],
    deferred_until: Sequence[datetime | None] = (),
    new_keys: frozenset[str] = frozenset(),
) -> tuple[list[WriteResult], list[WriteResult]]:
    """:func:`record_batch` for records that are already validated ``*Create`` models.

    For callers that validated each record when they accepted it (the batch writer), so that a
    batch is not validated twice. The models must not have been changed since.
    ``deferred_until``, when given, holds one activation deadline (or None) per decision, as
    :func:`record_decision` takes it: the deferred decisions' activation rows are written in the
    same transaction. ``new_keys``: decision ids the caller has just made (random, so never
    stored), inserted without looking them up first; a key among them that is stored after all
    fails the write (``IntegrityError``) rather than being answered as a replay.
    """
    if not decisions and not events:
        return [], []
    until = checked_deferrals(decisions, deferred_until)

    def write() -> tuple[list[WriteResult], list[WriteResult]]:
        written = _write_decisions(session, decisions, until, new_keys) if decisions else []
        return written, _write_events(session, events, batch=True) if events else []

    return run_write(session, write)


def get_event(*, session: Session, event_id: str) -> EventCreate | None:
    """The stored event, or ``None``."""
    return _load_events(session, [event_id]).get(event_id)


_USER_EVENTS_BEFORE = (
    select(_EVENT)
    .where(_EVENT.c.user_id == bindparam("user_id"), _EVENT.c.created_at < bindparam("before"))
    .order_by(_EVENT.c.created_at.desc(), _EVENT.c.event_id.desc())
    .limit(bindparam("limit"))
)
"""A user's ``limit`` latest events before ``before``, newest first (built once: the hot path of
a decision reads it, and the engine caches its compiled form)."""
_USER_EVENTS_FROM = (
    select(_EVENT)
    .where(_EVENT.c.user_id == bindparam("user_id"), _EVENT.c.created_at >= bindparam("before"))
    .order_by(_EVENT.c.created_at, _EVENT.c.event_id)
)
"""A user's events at or after ``before``, oldest first."""
_AROUND = union_all(
    _USER_EVENTS_BEFORE.subquery().select(),
    select(_EVENT).where(
        _EVENT.c.user_id == bindparam("user_id"), _EVENT.c.created_at >= bindparam("before")
    ),
).subquery()
_USER_EVENTS_AROUND = select(_AROUND).order_by(_AROUND.c.created_at, _AROUND.c.event_id)
"""Both at once, oldest first: every event of the first part is before ``before`` and every
one of the second at or after it, so one ascending order is the first part reversed and then
the second (one statement, for the serving worker's reads on its event loop)."""


def _events_of(rows: Any) -> list[EventCreate]:
    return [EventCreate.model_validate(dict(row._mapping)) for row in rows]


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
    conn = session.connection()
    if limit is not None:
        params = {"user_id": user_id, "before": before, "limit": limit}
        return _events_of(reversed(conn.execute(_USER_EVENTS_BEFORE, params).all()))
    t = _EVENT
    stmt = select(t).where(and_(t.c.user_id == user_id, t.c.created_at < before))
    return _events_of(conn.execute(stmt.order_by(t.c.created_at, t.c.event_id)))


def user_history_and_later(
    engine: Engine, *, user_id: str, before: datetime, limit: int, later: bool = True
) -> list[EventCreate]:
    """:func:`user_history` with ``limit`` (the user's ``limit`` latest events before
    ``before``), followed, with ``later``, by every event of the user at or after ``before``, in
    order; read on one connection of ``engine`` without an ORM session (a serving worker's
    history cache keeps this, :mod:`loop.history_cache`)."""
    with engine.connect() as conn:
        return user_history_and_later_on(
            conn, user_id=user_id, before=before, limit=limit, later=later
        )


def user_history_and_later_on(
    conn: Connection, *, user_id: str, before: datetime, limit: int, later: bool = True
) -> list[EventCreate]:
    """:func:`user_history_and_later` on the caller's connection, whose transaction it ends
    (a read left open would keep reading the log as of its start)."""
    before = check_aware_utc(before, "before")
    params = {"user_id": user_id, "before": before, "limit": limit}
    try:
        if later:
            rows = conn.execute(_USER_EVENTS_AROUND, params).all()
        else:
            rows = conn.execute(_USER_EVENTS_BEFORE, params).all()
            rows.reverse()
    finally:
        conn.rollback()
    return _events_of(rows)


__all__ = [
    "get_decision",
    "get_event",
    "record_batch",
    "record_decision",
    "record_decisions",
    "record_event",
    "record_events",
    "record_validated_batch",
    "user_history",
    "user_history_and_later",
    "user_history_and_later_on",
    "validated_decision",
    "validated_event",
]
