"""The shared vocabulary: one definition of each word, read the same way by every part."""

from __future__ import annotations

import math

import pytest

from explore.vw_format import daypart_name
from fm_core.types import ScoreRequest
from proplog.validation import check_choice
from sim import DAYPARTS as SIM_DAYPARTS
from vocab import (
    DAYPART_STARTS,
    DAYPARTS,
    EVENT_KINDS,
    EVENT_SOURCES,
    SURFACES,
    UNKNOWN_DAYPART,
    daypart_hours,
    daypart_of_hour,
    local_hour_of,
)


@pytest.mark.parametrize(
    ("hour", "expected"),
    [
        (0.0, "night"),
        (4.999, "night"),
        (5.0, "morning"),
        (11.99, "morning"),
        (12.0, "afternoon"),
        (16.99, "afternoon"),
        (17.0, "evening"),
        (21.99, "evening"),
        (22.0, "night"),
        (23.99, "night"),
        (24.0 + 6.0, "morning"),
        (-1.0, "night"),
    ],
)
def test_dayparts_start_at_5_12_17_and_22(hour: float, expected: str) -> None:
    assert DAYPARTS[daypart_of_hour(hour)] == expected
    assert daypart_name(hour) == expected


def test_an_unknown_local_hour_is_evening_for_the_scorer() -> None:
    assert daypart_of_hour(None) == UNKNOWN_DAYPART == DAYPARTS.index("evening")
    assert ScoreRequest(user_id="u", time=0.0).daypart == UNKNOWN_DAYPART


@pytest.mark.parametrize("hour", [math.nan, math.inf, -math.inf])
def test_a_non_finite_hour_is_refused_by_name(hour: float) -> None:
    with pytest.raises(ValueError, match="hour must be a finite number"):
        daypart_of_hour(hour)


def test_daypart_hours_cover_the_day_once() -> None:
    spans = [daypart_hours(d) for d in range(len(DAYPARTS))]
    assert [s for s, _ in spans] == list(DAYPART_STARTS)
    assert sum(end - start for start, end in spans) == 24.0
    for d, (start, end) in enumerate(spans):
        assert daypart_of_hour(start) == d
        assert daypart_of_hour(end - 1e-6) == d


@pytest.mark.parametrize(
    ("local_time", "hour"),
    [
        ("2026-03-01T20:30:00-05:00", 20.5),
        ("2026-03-01T07:15:36+09:00", 7.26),
        ("2026-03-01T00:00:00", 0.0),
        (None, None),
        ("", None),
    ],
)
def test_local_hour_is_the_wall_clock_whatever_the_offset(
    local_time: str | None, hour: float | None
) -> None:
    got = local_hour_of(local_time)
    assert got == pytest.approx(hour) if hour is not None else got is None


@pytest.mark.parametrize("bad", ["20:30", "yesterday", "2026-13-01T00:00:00"])
def test_a_local_time_that_is_not_iso_is_refused_naming_the_field(bad: str) -> None:
    with pytest.raises(ValueError, match=r"local_time must be an ISO 8601 time; got"):
        local_hour_of(bad)


def test_every_part_reads_the_same_words() -> None:
    assert SIM_DAYPARTS is DAYPARTS
    assert SURFACES == ("home", "search", "title", "billboard")
    assert EVENT_KINDS == ("play", "click", "thumb_up", "thumb_down", "list_add")
    assert EVENT_SOURCES == ("rec", "search", "direct")
    for word in SURFACES:
        assert check_choice(word, SURFACES, "surface") == word
