"""The words every part of loopbreak shares: surfaces, event kinds, event sources, dayparts and
the parsing of a request's local time.

This module imports nothing of the project, so every folder (the libraries included) may import
it. A value that is written here is written nowhere else: the HTTP schemas, the log's validation,
the scorer's features, the Vowpal Wabbit format and the simulated world all read it from here.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Literal, get_args

Surface = Literal["home", "search", "title", "billboard"]
"""Where a slate is shown: the home page, the search page, a title's page, the billboard."""
EventKind = Literal["play", "click", "thumb_up", "thumb_down", "list_add"]
EventSource = Literal["rec", "search", "direct"]
"""How the user found the item: a recommendation (a logged decision), search, or neither."""

SURFACES: tuple[str, ...] = get_args(Surface)
EVENT_KINDS: tuple[str, ...] = get_args(EventKind)
EVENT_SOURCES: tuple[str, ...] = get_args(EventSource)

DAYPARTS: tuple[str, ...] = ("morning", "afternoon", "evening", "night")
DAYPART_STARTS: tuple[float, ...] = (5.0, 12.0, 17.0, 22.0)
"""The local hour at which each daypart starts; night runs from 22:00 to 05:00."""
N_DAYPARTS = len(DAYPARTS)
UNKNOWN_DAYPART = DAYPARTS.index("evening")
"""The daypart of a request whose local time is unknown: evening, the busiest."""


def daypart_of_hour(hour: float | None) -> int:
    """The index in ``DAYPARTS`` of a local hour of day (fractions allowed, taken modulo 24):
    morning [5, 12), afternoon [12, 17), evening [17, 22), night [22, 5); ``UNKNOWN_DAYPART``
    for None."""
    if hour is None:
        return UNKNOWN_DAYPART
    if not math.isfinite(hour):
        raise ValueError(f"hour must be a finite number; got {hour}")
    h = hour % 24.0
    for index in range(N_DAYPARTS - 1):
        if DAYPART_STARTS[index] <= h < DAYPART_STARTS[index + 1]:
            return index
    return N_DAYPARTS - 1


def daypart_hours(index: int) -> tuple[float, float]:
    """The local hours [start, end) of a daypart, with night as [22, 29) (its end past 24)."""
    start = DAYPART_STARTS[index]
    end = DAYPART_STARTS[index + 1] if index + 1 < N_DAYPARTS else DAYPART_STARTS[0] + 24.0
    return start, end


def local_hour_of(local_time: str | None) -> float | None:
    """The hour of day, with fractions, of an ISO 8601 local time such as
    ``2026-03-01T20:30:00-05:00`` (the clock on the wall, whatever the offset); None for None or
    an empty string. A string that is not an ISO time raises ValueError naming ``local_time``."""
    if not local_time:
        return None
    try:
        when = datetime.fromisoformat(local_time)
    except ValueError:
        raise ValueError(f"local_time must be an ISO 8601 time; got {local_time!r}") from None
    return when.hour + when.minute / 60.0 + when.second / 3600.0
