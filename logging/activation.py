"""Deferred activation of decisions: a slate logged before the client knows it will be shown.

Owns the ``decision_activation`` rows (the table :class:`proplog.schema.DecisionActivation`) and
what they mean. A client that asks for a slate it may never show (a row below the fold, a
prefetch) makes the decision *deferred*: the decision is logged as any other, and with it, in the
same transaction, an activation row with its deadline ``expires_at`` (the decision's time plus
the service's activation window). The decision counts as **shown** only once :func:`activate`
sets ``activated_at``, which must be strictly before ``expires_at``; a deferred decision never
activated, or activated too late, is never shown, and stays in the log for audit. A decision
without an activation row was shown when it was made (every decision logged before this module,
and every one the loop's study and demo make).

What reads "shown":

- :func:`shown`, the SQL condition that :mod:`proplog.frames` (and through it OPE windows, the
  training table, exports, A/B analysis and retraining) applies by default;
- the store refuses an event attributed to a deferred decision that is not activated
  (:class:`ActivationConflictError`, ``reason="not_activated"``): a play from a slate nobody saw
  is a client bug. Events without a ``decision_id`` are unaffected.

Writes: the store's decision writes take ``deferred_until`` (the deadline, or None) per decision
and call :func:`write_deferrals` inside their transaction, so that the direct path
(:func:`proplog.store.record_decision`) and the group-commit path
(:class:`proplog.batch_writer.BatchWriter`) make a deferred decision and its activation row
durable together. A replayed decision must repeat its deferred state: one that differs only in
being deferred or not raises :class:`proplog.errors.ConflictError` naming ``deferred``.

:func:`activate` is idempotent: a second activation answers the first one's time with
``replayed=True``. It raises :class:`proplog.errors.UnknownDecisionError` for an unknown
decision, and :class:`ActivationConflictError` (a ``ConflictError`` naming ``decision_id``) for a
decision that was not deferred or whose activation expired (``now >= expires_at``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, Table, or_, select, update
from sqlmodel import Session

from proplog.errors import ConflictError, LogValidationError, UnknownDecisionError
from proplog.schema import Decision, DecisionActivation, DecisionCreate
from proplog.validation import check_record_time, check_uuid
from proplog.writes import WriteResult, chunks, insert_rows, run_write

logger = logging.getLogger(__name__)

DEFAULT_ACTIVATION_SECONDS = 3600.0
"""How long a deferred decision may wait for its activation unless the service says otherwise."""

_DECISION: Table = Decision.__table__  # type: ignore[attr-defined]
_ACTIVATION: Table = DecisionActivation.__table__  # type: ignore[attr-defined]
_ACTIVATION_COLUMNS = ("decision_id", "expires_at", "activated_at")

REASONS = ("not_deferred", "expired", "not_activated")
"""Why :class:`ActivationConflictError` refused (its ``reason``)."""


class ActivationConflictError(ConflictError):
    """A decision's activation state refuses what was asked, naming the ``decision_id`` field.

    ``reason`` is one of :data:`REASONS`: ``not_deferred`` (activating a decision that counted as
    shown when it was made), ``expired`` (activating at or after ``expires_at``),
    ``not_activated`` (an event attributed to a deferred decision that is not activated). A
    ``ConflictError``, so that whatever answers a conflict answers this one too (the API: 409).
    """

    def __init__(self, *, decision_id: str, reason: str, message: str, where: str) -> None:
        ValueError.__init__(self, message)
        self.key_name = "decision_id"
        self.key = decision_id
        self.field = where
        self.stored = reason
        self.given = None
        self.reason = reason
        self.message = message

    @classmethod
    def not_deferred(cls, decision_id: str) -> ActivationConflictError:
        return cls(
            decision_id=decision_id,
            reason="not_deferred",
            message=f"decision_id {decision_id!r} was not deferred; it counted as shown when it "
            "was made",
            where="decision_id",
        )

    @classmethod
    def expired(cls, decision_id: str, expires_at: datetime) -> ActivationConflictError:
        return cls(
            decision_id=decision_id,
            reason="expired",
            message=f"decision_id {decision_id!r} was deferred and its activation expired at "
            f"{expires_at.isoformat()}; it never counts as shown",
            where="decision_id",
        )

    @classmethod
    def not_activated(
        cls, decision_id: str, *, where: str = "decision_id"
    ) -> ActivationConflictError:
        return cls(
            decision_id=decision_id,
            reason="not_activated",
            message=f"{where} {decision_id!r} names a decision that was deferred and not "
            "activated; its slate counts as shown, and takes events, only once activated",
            where=where,
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (self.key, self.reason, self.message, self.field))


def _rebuild(decision_id: str, reason: str, message: str, where: str) -> ActivationConflictError:
    return ActivationConflictError(
        decision_id=decision_id, reason=reason, message=message, where=where
    )


@dataclass(frozen=True)
class Activation:
    """A deferred decision's activation row."""

    decision_id: str
    expires_at: datetime
    activated_at: datetime | None

    @property
    def shown(self) -> bool:
        """Activated before its deadline: the decision counts as shown."""
        return self.activated_at is not None and self.activated_at < self.expires_at


@dataclass(frozen=True)
class ActivationResult:
    """What :func:`activate` did: ``replayed`` when the decision was already activated (then
    ``activated_at`` is the first activation's time)."""

    decision_id: str
    activated_at: datetime
    expires_at: datetime
    replayed: bool


def shown(decision_id: ColumnElement[Any]) -> ColumnElement[bool]:
    """SQL: the decision whose id is ``decision_id`` counts as shown (no activation row, or one
    activated before its deadline). A correlated ``NOT EXISTS`` on the activation's primary key,
    so a log without deferred decisions reads the same rows as before, at the cost of one index
    probe per decision."""
    a = _ACTIVATION.c
    unshown = select(a.decision_id).where(
        a.decision_id == decision_id,
        or_(a.activated_at.is_(None), a.activated_at >= a.expires_at),
    )
    return ~unshown.exists()


def checked_deferral(decision: DecisionCreate, deferred_until: Any) -> datetime | None:
    """``deferred_until`` (a deferred decision's activation deadline) checked: None, or an aware
    time in the log's range strictly after the decision's ``created_at``, in UTC."""
    if deferred_until is None:
        return None
    until = check_record_time(deferred_until, "deferred_until")
    if until <= decision.created_at:
        raise LogValidationError(
            "deferred_until",
            f"a time after the decision's created_at ({decision.created_at.isoformat()})",
            until.isoformat(),
        )
    return until


def checked_deferrals(
    decisions: Sequence[DecisionCreate], deferred_until: Sequence[Any]
) -> list[datetime | None]:
    """One checked deadline (or None) per decision; an empty ``deferred_until`` defers none."""
    if not deferred_until:
        return [None] * len(decisions)
    if isinstance(deferred_until, str | bytes) or len(deferred_until) != len(decisions):
        raise LogValidationError(
            "deferred_until", f"a sequence of {len(decisions)} deadlines or Nones", deferred_until
        )
    if all(until is None for until in deferred_until):
        return list(deferred_until)
    out: list[datetime | None] = []
    for i, (decision, until) in enumerate(zip(decisions, deferred_until, strict=True)):
        try:
            out.append(checked_deferral(decision, until))
        except LogValidationError as exc:
            raise exc.with_prefix(f"decisions[{i}].") from exc
    return out


def load_activations(conn: Connection, ids: Sequence[str]) -> dict[str, Activation]:
    """The activation rows of the decisions ``ids`` that have one (the deferred ones)."""
    found: dict[str, Activation] = {}
    for chunk in chunks(list(ids)):
        for row in conn.execute(select(_ACTIVATION).where(_ACTIVATION.c.decision_id.in_(chunk))):
            found[row.decision_id] = Activation(
                decision_id=row.decision_id,
                expires_at=row.expires_at,
                activated_at=row.activated_at,
            )
    return found


def write_deferrals(
    conn: Connection,
    decisions: Sequence[DecisionCreate],
    deferred_until: Sequence[datetime | None],
    new: Sequence[tuple[int, DecisionCreate]],
    results: Sequence[WriteResult],
) -> None:
    """Inside a decision write's transaction, after its decision rows: insert the activation rows
    of the new deferred decisions, and check that each replay repeats its deferred state.

    ``deferred_until`` is aligned with ``decisions`` (checked by :func:`checked_deferrals`);
    ``new`` and ``results`` are what :func:`proplog.writes.split_replays` gave for them.
    Raises ``ConflictError`` naming ``deferred`` for a replay that differs in it."""
    replays = [i for i, result in enumerate(results) if not result.created]
    if replays:
        first = {d.decision_id: i for i, d in new}
        stored_ids = [decisions[i].decision_id for i in replays]
        stored = load_activations(conn, [key for key in stored_ids if key not in first])
        for i in replays:
            key = decisions[i].decision_id
            was = deferred_until[first[key]] is not None if key in first else key in stored
            given = deferred_until[i] is not None
            if was != given:
                raise ConflictError(
                    key_name="decision_id", key=key, field="deferred", stored=was, given=given
                )
    rows = sorted(
        (d.decision_id, deferred_until[i], None) for i, d in new if deferred_until[i] is not None
    )
    if rows:
        insert_rows(conn, _ACTIVATION, _ACTIVATION_COLUMNS, rows)
        logger.debug("recorded %d deferred decisions", len(rows))


def get_activation(*, session: Session, decision_id: str) -> Activation | None:
    """The decision's activation row: None for a decision that was not deferred (or unknown)."""
    try:
        key = check_uuid(decision_id, "decision_id")
    except LogValidationError:
        return None
    return load_activations(session.connection(), [key]).get(key)


def activate(*, session: Session, decision_id: str, now: datetime) -> ActivationResult:
    """Activate the deferred decision ``decision_id`` at ``now`` (aware): it counts as shown from
    then on. Idempotent: an activated decision answers its first activation with
    ``replayed=True``, even after its deadline.

    Raises ``LogValidationError`` for a malformed id or time, ``UnknownDecisionError`` for a
    decision the log does not hold, and :class:`ActivationConflictError` (naming
    ``decision_id``) for a decision that was not deferred, or when ``now`` is at or after its
    ``expires_at``."""
    key = check_uuid(decision_id, "decision_id")
    when = check_record_time(now, "now")

    def write() -> ActivationResult:
        conn = session.connection()
        found = load_activations(conn, [key]).get(key)
        if found is None:
            stored = conn.execute(
                select(_DECISION.c.decision_id).where(_DECISION.c.decision_id == key)
            ).first()
            if stored is None:
                raise UnknownDecisionError(key)
            raise ActivationConflictError.not_deferred(key)
        if found.activated_at is None:
            if when >= found.expires_at:
                raise ActivationConflictError.expired(key, found.expires_at)
            a = _ACTIVATION.c
            changed = conn.execute(
                update(_ACTIVATION)
                .where(a.decision_id == key, a.activated_at.is_(None))
                .values(activated_at=when)
            ).rowcount
            if changed == 1:
                logger.info("decision %s activated at %s", key, when.isoformat())
                return ActivationResult(key, when, found.expires_at, replayed=False)
            found = load_activations(conn, [key])[key]  # a concurrent activation came first
            assert found.activated_at is not None
        logger.info("decision %s was already activated; nothing written", key)
        return ActivationResult(key, found.activated_at, found.expires_at, replayed=True)

    return run_write(session, write)


__all__ = [
    "DEFAULT_ACTIVATION_SECONDS",
    "REASONS",
    "Activation",
    "ActivationConflictError",
    "ActivationResult",
    "activate",
    "checked_deferral",
    "checked_deferrals",
    "get_activation",
    "load_activations",
    "shown",
    "write_deferrals",
]
