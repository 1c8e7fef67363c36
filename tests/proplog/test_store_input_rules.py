"""The log's own input rules for every writer, on both back ends: a record's time must be in
1970..2261 (UTC), and no string may hold a NUL character; each refusal names the field and
nothing is written."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlmodel import Session
from store_inputs import T0, count_rows, decision_payload

from proplog.errors import LogValidationError
from proplog.store import record_batch, record_decision, record_event

DECISION_ID = "6f1c2a8e-3b7d-4c1e-9a2f-0d5e8b7c6a41"
NUL = "\u0000"
EARLIEST_TIME = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_TIME = datetime(2262, 1, 1, tzinfo=UTC)
"""The documented range: [1970-01-01, 2262-01-01) UTC."""


def good_decision() -> dict[str, Any]:
    decision = decision_payload(decision_id=DECISION_ID)
    decision.update(device="tv", country="US", local_time="2026-11-22T20:15:00-05:00", query="q")
    decision["arm"] = "control"
    return decision


def good_event() -> dict[str, Any]:
    return {
        "event_id": "ev-1",
        "created_at": T0 + timedelta(minutes=1),
        "user_id": "u1",
        "item_id": 4,
        "kind": "play",
        "value": 120.0,
        "source": "direct",
    }


PLUS_ONE = timezone(timedelta(hours=1))
MINUS_ONE = timezone(timedelta(hours=-1))
OUT_OF_RANGE = [
    pytest.param(datetime(1, 1, 1, tzinfo=PLUS_ONE), id="year-1+01:00-overflows-in-utc"),
    pytest.param(
        datetime(9999, 12, 31, 23, 59, 59, tzinfo=MINUS_ONE), id="year-9999-01:00-overflows"
    ),
    pytest.param(datetime.min.replace(tzinfo=UTC), id="datetime-min"),
    pytest.param(datetime.max.replace(tzinfo=UTC), id="datetime-max"),
    pytest.param(EARLIEST_TIME - timedelta(microseconds=1), id="just-before-1970"),
    pytest.param(datetime(1970, 1, 1, 0, 30, tzinfo=PLUS_ONE), id="1969-in-utc"),
    pytest.param(LATEST_TIME, id="2262"),
    pytest.param(datetime(2261, 12, 31, 23, 30, tzinfo=MINUS_ONE), id="2262-in-utc"),
]


@pytest.mark.parametrize("when", OUT_OF_RANGE)
def test_decision_time_outside_the_range_is_refused_naming_created_at(
    engine: Engine, when: datetime
) -> None:
    with (
        Session(engine) as session,
        pytest.raises(LogValidationError, match=r"1970-01-01.*2262-01-01") as info,
    ):
        record_decision(session=session, decision={**good_decision(), "created_at": when})
    assert info.value.field == "created_at"
    assert count_rows(engine, "decision") == 0
    assert count_rows(engine, "slate_item") == 0


@pytest.mark.parametrize("when", OUT_OF_RANGE)
def test_event_time_outside_the_range_is_refused_naming_created_at(
    engine: Engine, when: datetime
) -> None:
    with (
        Session(engine) as session,
        pytest.raises(LogValidationError, match=r"1970-01-01.*2262-01-01") as info,
    ):
        record_event(session=session, event={**good_event(), "created_at": when})
    assert info.value.field == "created_at"
    assert count_rows(engine, "event") == 0


def test_the_edges_of_the_range_are_stored_as_given(engine: Engine) -> None:
    last = LATEST_TIME - timedelta(microseconds=1)
    events = [
        {**good_event(), "event_id": "first", "created_at": EARLIEST_TIME},
        {**good_event(), "event_id": "last", "created_at": last.astimezone(MINUS_ONE)},
    ]
    with Session(engine) as session:
        record_batch(session=session, events=events)
        stored = session.connection().execute(
            text("SELECT event_id FROM event ORDER BY created_at")
        )
        assert [row[0] for row in stored] == ["first", "last"]


DECISION_STRINGS = [
    "user_id", "surface", "device", "country", "local_time", "query", "arm",
    "policy_name", "policy_version", "model_version", "decision_id",
]  # fmt: skip
EVENT_STRINGS = ["event_id", "user_id", "kind", "source", "decision_id"]


@pytest.mark.parametrize("field", DECISION_STRINGS)
def test_nul_in_a_decision_string_is_refused_naming_it(engine: Engine, field: str) -> None:
    decision = good_decision()
    decision[field] = decision[field][:1] + NUL + decision[field][1:]
    with (
        Session(engine) as session,
        pytest.raises(LogValidationError, match=re.escape(field)) as info,
    ):
        record_decision(session=session, decision=decision)
    assert info.value.field == field
    assert count_rows(engine, "decision") == 0
    assert count_rows(engine, "slate_item") == 0


@pytest.mark.parametrize("field", EVENT_STRINGS)
def test_nul_in_an_event_string_is_refused_naming_it(engine: Engine, field: str) -> None:
    event = {**good_event(), "decision_id": DECISION_ID, "position": 0, "item_id": 20}
    with Session(engine) as session:
        record_decision(session=session, decision=good_decision())
    event[field] = event[field] + NUL
    with (
        Session(engine) as session,
        pytest.raises(LogValidationError, match=re.escape(field)) as info,
    ):
        record_event(session=session, event=event)
    assert info.value.field == field
    assert count_rows(engine, "event") == 0


def test_nul_in_a_batch_names_the_record_and_writes_nothing(engine: Engine) -> None:
    bad = {**good_event(), "event_id": "ev-2", "user_id": "u" + NUL}
    with (
        Session(engine) as session,
        pytest.raises(LogValidationError, match=re.escape("events[1].user_id")),
    ):
        record_batch(session=session, decisions=[good_decision()], events=[good_event(), bad])
    assert count_rows(engine, "decision") == 0
    assert count_rows(engine, "event") == 0


def test_good_records_are_accepted(engine: Engine) -> None:
    """The tables only mean something if the unmutated records are valid."""
    with Session(engine) as session:
        assert record_decision(session=session, decision=good_decision()).created is True
        assert record_event(session=session, event=good_event()).created is True
