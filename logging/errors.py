"""Errors raised by the propensity log (``proplog``).

Owns the three failure kinds a caller of the store has to tell apart:

- :class:`LogValidationError`: the input breaks a rule of the decision or event record. It names
  the field path (``slate[3].propensity``), what was expected, and what was given.
- :class:`UnknownDecisionError`: an event points at a ``decision_id`` that is not stored.
- :class:`ConflictError`: an idempotency key was replayed with different content.

and one failure of the log itself: :class:`WriterStoppedError`, a batch writer that no longer
writes (closed, or its thread stopped on an error), so that a service can answer "unavailable"
rather than "internal error".
"""

from __future__ import annotations

from typing import Any


class LogValidationError(ValueError):
    """An input record breaks a rule of the log.

    The message reads ``"<field> must be <expected>; got <got>"``, for example
    ``"slate[3].propensity must be in (0, 1]; got 0.0"``.
    """

    def __init__(self, field: str, expected: str, got: Any) -> None:
        self.field = field
        self.expected = expected
        self.got = got
        super().__init__(f"{field} must be {expected}; got {got!r}")

    def with_prefix(self, prefix: str) -> LogValidationError:
        """The same error with ``prefix`` put before the field path (``decisions[4].``)."""
        err = LogValidationError(f"{prefix}{self.field}", self.expected, self.got)
        err.__cause__ = self
        return err

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.field, self.expected, self.got))


class UnknownDecisionError(LookupError):
    """An event names a ``decision_id`` that the log does not hold."""

    def __init__(self, decision_id: str, *, where: str = "decision_id") -> None:
        self.decision_id = decision_id
        self.where = where
        super().__init__(f"{where} {decision_id!r} is not a stored decision")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.decision_id,), {"where": self.where})


class ConflictError(ValueError):
    """An idempotency key was replayed with content that differs from the stored record.

    ``key_name`` is ``"decision_id"``, ``"event_id"``, ...; ``key`` its value; ``field`` the
    first field path where stored and given content differ.
    """

    def __init__(self, *, key_name: str, key: str, field: str, stored: Any, given: Any) -> None:
        self.key_name = key_name
        self.key = key
        self.field = field
        self.stored = stored
        self.given = given
        super().__init__(
            f"{key_name} {key!r} was already recorded with different content; "
            f"first difference at {field}: stored {stored!r}, got {given!r}"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _rebuild_conflict,
            (self.key_name, self.key, self.field, self.stored, self.given),
        )


def _rebuild_conflict(
    key_name: str, key: str, field: str, stored: Any, given: Any
) -> ConflictError:
    return ConflictError(key_name=key_name, key=key, field=field, stored=stored, given=given)


class WriterStoppedError(RuntimeError):
    """The batch writer accepts no more records: it was closed, or its thread stopped on an
    error (``cause``, in the message). Nothing of the record was written."""
