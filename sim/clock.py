"""The world's clock: days since a fixed UTC epoch, and conversion to datetimes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def to_datetime(t_days: float) -> datetime:
    """The aware UTC datetime of a world time in days since ``EPOCH``."""
    return EPOCH + timedelta(days=float(t_days))


def to_days(when: datetime) -> float:
    """World time in days since ``EPOCH`` of an aware datetime."""
    if when.tzinfo is None:
        raise ValueError("when must be timezone-aware")
    return (when - EPOCH).total_seconds() / 86400.0
