"""The rules of the propensity log, message by message, on records built in memory (no store):
every refusal names its field and says what was expected, the fast paths accept the common
valid records and refuse every broken rule on their own (a 1-item slate, each position of a
longer one), and the edges of each rule (id 0, position 0, a 128-character id, the prefix
tolerance, an exact marginal at its prefix) are accepted."""

from __future__ import annotations

import copy
import uuid
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any

import numpy as np
import pytest
from pydantic import BaseModel, TypeAdapter, ValidationError, field_validator
from store_inputs import T0, decision_payload, rec_play

from proplog.errors import LogValidationError
from proplog.schema import DecisionCreate, EventCreate, SlateItemCreate
from proplog.validation import (
    MAX_ITEM_ID,
    _candidates_look_valid,
    _explain_candidates,
    _explain_slate,
    _slate_looks_valid,
    check_aware_utc,
    check_name,
    check_non_negative_int,
    check_optional_text,
    check_probability,
    check_record_time,
    check_uuid,
    from_pydantic_error,
    to_json_value,
    validate_decision,
)
from vocab import EVENT_KINDS, EVENT_SOURCES, SURFACES

DECISION_ID = "0b8f5e2a-1c3d-4e5f-8a9b-0c1d2e3f4a5b"


def payload(items: tuple[int, ...] = (20, 30, 10)) -> dict[str, Any]:
    return decision_payload(decision_id=DECISION_ID, items=items)


def refusal(record: dict[str, Any], model: type = DecisionCreate) -> str:
    """The store's message for a refused record (pydantic's error turned back into ours)."""
    with pytest.raises(ValidationError) as info:
        model.model_validate(record)
    error = from_pydantic_error(info.value)
    assert isinstance(error, LogValidationError)
    return str(error)


def unchecked(record: dict[str, Any]) -> DecisionCreate:
    """The record as a model without running any rule, for the fast paths on their own."""
    slate = [SlateItemCreate.model_construct(**s) for s in record["slate"]]
    return DecisionCreate.model_construct(**{**record, "slate": slate})


def fast_paths_accept(record: dict[str, Any]) -> bool:
    d = unchecked(record)
    candidates = set(d.candidate_ids)
    return _candidates_look_valid(d, candidates) and _slate_looks_valid(d, candidates)


def changed(record: dict[str, Any], k: int | None = None, **values: Any) -> dict[str, Any]:
    """A copy with ``values`` set at slate position ``k``, or at the top level."""
    out = copy.deepcopy(record)
    (out["slate"][k] if k is not None else out).update(values)
    return out


# ---- accepted: the common records and the edges of each rule -------------------------------------


def one_item(propensity: float = 0.5, cond: float = 0.5, prefix: float = 0.5) -> dict[str, Any]:
    record = payload(items=(20,))
    record["slate"][0].update(propensity=propensity, cond_propensity=cond, prefix_propensity=prefix)
    return record


def underflowing_prefix() -> dict[str, Any]:
    """Two positions of probability 1e-200 each: the prefix, 1e-400, is 0.0 in floats."""
    record = payload(items=(20, 30))
    for k in (0, 1):
        record["slate"][k].update(propensity=1e-200, cond_propensity=1e-200)
    record["slate"][0]["prefix_propensity"] = 1e-200
    record["slate"][1]["prefix_propensity"] = 0.0
    return record


ACCEPTED = [
    pytest.param(payload(), id="three-items"),
    pytest.param(one_item(), id="one-item"),
    pytest.param(one_item(1.0, 1.0, 1.0), id="probabilities-of-one"),
    pytest.param(
        changed(changed(payload(items=(0,)), candidate_ids=[0, 20, 30, 40]), 0, item_id=0),
        id="item-id-zero",
    ),
    pytest.param(
        changed(payload(items=(20,)), candidate_ids=[MAX_ITEM_ID, 20, 30, 40]), id="max-item-id"
    ),
    pytest.param(changed(payload(), 1, prefix_propensity=0.125 * (1 + 5e-10)), id="prefix-tol"),
    pytest.param(changed(payload(), 0, propensity=0.5), id="marginal-equal-to-prefix"),
    pytest.param(changed(payload(), 0, propensity=0.5 * (1 - 5e-10)), id="marginal-within-tol"),
    pytest.param(changed(payload(), 0, propensity=0.5 * (1 - 1e-9)), id="marginal-at-tol"),
    pytest.param(
        changed(changed(payload(), 0, propensity=None), marginals_exact=False), id="no-marginal"
    ),
    pytest.param(
        changed(changed(payload(), 0, propensity=0.1), marginals_exact=False),
        id="inexact-marginal-below-prefix",
    ),
    pytest.param(changed(payload(), candidate_scores=[-1e300, 0.0, 1e300, 5.0]), id="big-scores"),
]


@pytest.mark.parametrize("record", ACCEPTED)
def test_valid_records_pass_the_fast_paths_and_the_full_rules(record: dict[str, Any]) -> None:
    assert fast_paths_accept(record)
    DecisionCreate.model_validate(record)


def test_long_ids_and_names_are_accepted_up_to_128_characters() -> None:
    record = changed(payload(), user_id="u" * 128, policy_name="p" * 128)
    assert DecisionCreate.model_validate(record).user_id == "u" * 128
    assert check_name("x", "f") == "x"
    message = refusal(changed(payload(), user_id="u" * 129))
    assert message == f"user_id must be a string of 1..128 characters; got {'u' * 129!r}"
    assert refusal(changed(payload(), model_version="")) == (
        "model_version must be a string of 1..128 characters; got ''"
    )


def test_ids_and_times_are_normalized() -> None:
    upper = DECISION_ID.upper()
    offset = timezone(timedelta(hours=2))
    d = DecisionCreate.model_validate(
        changed(payload(), decision_id=upper, created_at=datetime(2024, 5, 1, 14, tzinfo=offset))
    )
    assert d.decision_id == DECISION_ID
    assert d.created_at == T0 and d.created_at.tzinfo is UTC
    assert check_uuid(uuid.UUID(DECISION_ID), "decision_id") == DECISION_ID
    d = DecisionCreate.model_validate(
        changed(payload(), exploration={"epsilon": np.float64(0.25), "pool": np.arange(2)})
    )
    assert d.exploration == {"epsilon": 0.25, "pool": [0, 1]}
    assert type(d.exploration["epsilon"]) is float


# ---- refused, with the message -------------------------------------------------------------------

SLATE_REFUSALS = [
    (changed(payload(), slate=[]), "slate must be a non-empty list; got []"),
    (
        changed(payload(), 1, position=2),
        "slate[1].position must be 1 (positions are 0..K-1 in slate order); got 2",
    ),
    (
        changed(payload(), 0, position=1),
        "slate[0].position must be 0 (positions are 0..K-1 in slate order); got 1",
    ),
    (changed(payload(), 0, item_id=-1), "slate[0].item_id must be an integer >= 0; got -1"),
    (
        changed(payload(), 2, item_id=20),
        "slate[2].item_id must be not already in the slate (duplicate of slate[0]); got 20",
    ),
    (
        changed(payload(), 2, item_id=999),
        "slate[2].item_id must be one of candidate_ids (unknown item id); got 999",
    ),
    (changed(payload(), 1, score=float("inf")), "slate[1].score must be a finite number; got inf"),
    (changed(payload(), 0, score=float("nan")), "slate[0].score must be a finite number; got nan"),
    (
        changed(payload(), 2, score=float("-inf")),
        "slate[2].score must be a finite number; got -inf",
    ),
    (one_item(propensity=1.5), "slate[0].propensity must be in (0, 1]; got 1.5"),
    (
        changed(changed(payload(), 1, propensity=0.0), marginals_exact=False),
        "slate[1].propensity must be in (0, 1]; got 0.0",
    ),
    (
        changed(payload((20, 30)), 1, cond_propensity=1.2, prefix_propensity=0.6, propensity=0.6),
        "slate[1].cond_propensity must be in (0, 1]; got 1.2",
    ),
    (
        one_item(propensity=1.0, cond=1.0, prefix=1.0 + 1e-10),
        f"slate[0].prefix_propensity must be in (0, 1]; got {1.0 + 1e-10!r}",
    ),
    (
        underflowing_prefix(),
        "slate[1].prefix_propensity must be in (0, 1]; got 0.0",
    ),
    (one_item(propensity=0.0), "slate[0].propensity must be in (0, 1]; got 0.0"),
    (changed(payload(), 2, propensity=1.5), "slate[2].propensity must be in (0, 1]; got 1.5"),
    (
        changed(payload(), 1, propensity=None),
        "slate[1].propensity must be a number when marginals_exact is true; got None",
    ),
    (one_item(cond=0.0, prefix=0.0), "slate[0].cond_propensity must be in (0, 1]; got 0.0"),
    (one_item(cond=1.5, prefix=1.5), "slate[0].cond_propensity must be in (0, 1]; got 1.5"),
    (
        changed(payload(), 2, cond_propensity=1.2),
        "slate[2].cond_propensity must be in (0, 1]; got 1.2",
    ),
    (
        changed(payload(), 1, prefix_propensity=1.5),
        "slate[1].prefix_propensity must be in (0, 1]; got 1.5",
    ),
    (
        changed(payload(), 2, prefix_propensity=0.0),
        "slate[2].prefix_propensity must be in (0, 1]; got 0.0",
    ),
    (
        one_item(prefix=0.25),
        "slate[0].prefix_propensity must be slate[0].cond_propensity = 0.5 (to 1e-09 relative);"
        " got 0.25",
    ),
    (
        changed(payload(), 1, prefix_propensity=0.125 * (1 + 2e-9)),
        "slate[1].prefix_propensity must be slate[0].prefix_propensity * slate[1].cond_propensity"
        f" = 0.125 (to 1e-09 relative); got {0.125 * (1 + 2e-9)!r}",
    ),
    (
        changed(payload(), 2, prefix_propensity=0.025 * (1 - 2e-9)),
        "slate[2].prefix_propensity must be slate[1].prefix_propensity * slate[2].cond_propensity"
        f" = 0.025 (to 1e-09 relative); got {0.025 * (1 - 2e-9)!r}",
    ),
    (
        changed(payload(), 0, propensity=0.4),
        "slate[0].propensity must be >= slate[0].prefix_propensity (0.5) when marginals are exact;"
        " got 0.4",
    ),
    (
        changed(payload(), 1, propensity=0.125 * (1 - 2e-9)),
        "slate[1].propensity must be >= slate[1].prefix_propensity (0.125) when marginals are"
        f" exact; got {0.125 * (1 - 2e-9)!r}",
    ),
]

CANDIDATE_REFUSALS = [
    (changed(payload(), candidate_ids=[]), "candidate_ids must be a non-empty list; got []"),
    (
        changed(payload(), candidate_ids=[-1, 20, 30, 10]),
        "candidate_ids[0] must be an integer >= 0; got -1",
    ),
    (
        changed(payload(), candidate_ids=[10, MAX_ITEM_ID + 1, 20, 30]),
        f"candidate_ids[1] must be at most {MAX_ITEM_ID} (int64); got {MAX_ITEM_ID + 1}",
    ),
    (
        changed(payload(), candidate_ids=[MAX_ITEM_ID, 20, 30, 10], candidate_scores=[0.1]),
        "candidate_scores must be the same length as candidate_ids (4); got 'length 1'",
    ),
    (
        changed(payload(), candidate_ids=[10, 20, 30, 10]),
        "candidate_ids[3] must be unique (duplicate of candidate_ids[0]); got 10",
    ),
    (
        changed(payload(), candidate_scores=[0.9, 0.8, 0.7]),
        "candidate_scores must be the same length as candidate_ids (4); got 'length 3'",
    ),
    (
        changed(payload(), candidate_scores=[0.9, 0.8, 0.7, 0.1, 0.0]),
        "candidate_scores must be the same length as candidate_ids (4); got 'length 5'",
    ),
    (
        changed(payload(), candidate_scores=[0.9, float("nan"), 0.7, 0.1]),
        "candidate_scores[1] must be a finite number; got nan",
    ),
    (
        changed(payload(), candidate_scores=[0.9, 0.8, 0.7, float("-inf")]),
        "candidate_scores[3] must be a finite number; got -inf",
    ),
]


@pytest.mark.parametrize(("record", "message"), SLATE_REFUSALS + CANDIDATE_REFUSALS)
def test_each_broken_rule_is_refused_by_the_fast_path_and_named(
    record: dict[str, Any], message: str
) -> None:
    assert not fast_paths_accept(record)
    assert refusal(record) == message


def test_the_fast_path_refuses_values_pydantic_would_have_converted() -> None:
    # model_construct skips pydantic: the fast path must not trust the types it finds. Each
    # record breaks only the type (an int where a float belongs); the full rules accept ints.
    assert fast_paths_accept(one_item(1.0, 1.0, 1.0))
    assert not fast_paths_accept(changed(payload(), 0, item_id=20.0))
    for record in (
        changed(payload(), 0, score=1),
        one_item(propensity=1.0, cond=1, prefix=1.0),  # type: ignore[arg-type]
        one_item(propensity=1.0, cond=1.0, prefix=1),  # type: ignore[arg-type]
        one_item(propensity=1, cond=1.0, prefix=1.0),  # type: ignore[arg-type]
    ):
        assert not fast_paths_accept(record)
        _explain_slate(unchecked(record))


@pytest.mark.parametrize("record", ACCEPTED)
def test_the_full_slate_rules_accept_what_the_fast_path_accepts(record: dict[str, Any]) -> None:
    _explain_slate(unchecked(record))
    _explain_candidates(unchecked(record))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"decision_id": "not-a-uuid"}, "decision_id must be a UUID string; got 'not-a-uuid'"),
        (
            {"created_at": datetime(2024, 5, 1)},
            "created_at must be a timezone-aware datetime (naive datetimes are refused; use UTC);"
            " got datetime.datetime(2024, 5, 1, 0, 0)",
        ),
        (
            {"created_at": datetime(1969, 12, 31, 23, 59, tzinfo=UTC)},
            "created_at must be a time from 1970-01-01T00:00:00Z up to (not including)"
            " 2262-01-01T00:00:00Z; got '1969-12-31T23:59:00+00:00'",
        ),
        (
            {"created_at": datetime(1970, 1, 1, 1, tzinfo=timezone(timedelta(hours=2)))},
            "created_at must be a time from 1970-01-01T00:00:00Z up to (not including)"
            " 2262-01-01T00:00:00Z; got '1970-01-01T01:00:00+02:00'",
        ),
        (
            {"created_at": datetime(2262, 1, 1, tzinfo=UTC)},
            "created_at must be a time from 1970-01-01T00:00:00Z up to (not including)"
            " 2262-01-01T00:00:00Z; got '2262-01-01T00:00:00+00:00'",
        ),
        (
            {"surface": "nowhere"},
            f"surface must be one of {', '.join(SURFACES)}; got 'nowhere'",
        ),
        (
            {"device": "a\x00b"},
            "device must be a string without NUL (\\u0000) characters; got 'a\\x00b'",
        ),
        ({"source_item": -1}, "source_item must be an integer >= 0; got -1"),
        (
            {"exploration": {"epsilon": float("nan")}},
            "exploration must be JSON-serializable with finite numbers (Out of range float"
            " values are not JSON compliant); got {'epsilon': nan}",
        ),
        ({"user_id": 5}, "user_id must be a valid string; got 5"),
    ],
)
def test_decision_fields_are_refused_with_their_message(changes: dict, message: str) -> None:
    assert refusal(changed(payload(), **changes)) == message


def test_the_edges_of_the_time_range_are_accepted() -> None:
    for at in (datetime(1970, 1, 1, tzinfo=UTC), datetime(2261, 12, 31, 23, 59, tzinfo=UTC)):
        assert DecisionCreate.model_validate(changed(payload(), created_at=at)).created_at == at
    behind = datetime(1969, 12, 31, 23, tzinfo=timezone(timedelta(hours=-1)))  # 00:00Z
    d = DecisionCreate.model_validate(changed(payload(), created_at=behind))
    assert d.created_at == datetime(1970, 1, 1, tzinfo=UTC)


def test_a_missing_field_is_named() -> None:
    record = payload()
    del record["surface"]
    assert refusal(record) == "surface must be given (field required); got 'nothing'"
    record = payload()
    del record["slate"][1]["score"]
    assert refusal(record) == "slate[1].score must be given (field required); got 'nothing'"


def test_optional_text_and_json_values() -> None:
    assert check_optional_text(None, "device") is None
    assert check_optional_text("tv", "device") == "tv"
    with pytest.raises(LogValidationError, match=r"^device must be a string or null; got 5$"):
        check_optional_text(5, "device")
    flat = {"epsilon": 0.1, "pool": 100, "name": "x", "on": True, "none": None}
    out = to_json_value(flat, "exploration")
    assert out == flat and out is not flat
    assert to_json_value({"nested": {"a": (1, 2)}}, "exploration") == {"nested": {"a": [1, 2]}}
    with pytest.raises(LogValidationError, match="object is not JSON serializable"):
        to_json_value({"a": object()}, "exploration")


# ---- events --------------------------------------------------------------------------------------


def event(**changes: Any) -> dict[str, Any]:
    """A play of the decision's first item, with ``changes``."""
    record = rec_play(payload())
    record.update(changes)
    return record


def test_an_event_at_position_zero_and_an_unattributed_event_are_accepted() -> None:
    e = EventCreate.model_validate(event(position=0, decision_id=DECISION_ID.upper(), value=0))
    assert e.position == 0 and e.decision_id == DECISION_ID
    e = EventCreate.model_validate(event(position=None, decision_id=None, source="search"))
    assert e.decision_id is None
    assert EventCreate.model_validate(event(event_id="e" * 128)).event_id == "e" * 128


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"event_id": ""}, "event_id must be a string of 1..128 characters; got ''"),
        (
            {"user_id": "u" * 129},
            f"user_id must be a string of 1..128 characters; got {'u' * 129!r}",
        ),
        ({"item_id": -1}, "item_id must be an integer >= 0; got -1"),
        ({"kind": "view"}, f"kind must be one of {', '.join(EVENT_KINDS)}; got 'view'"),
        ({"source": "ads"}, f"source must be one of {', '.join(EVENT_SOURCES)}; got 'ads'"),
        ({"value": -1.0}, "value must be a finite number >= 0; got -1.0"),
        ({"value": float("inf")}, "value must be a finite number >= 0; got inf"),
        ({"decision_id": "nope"}, "decision_id must be a UUID string; got 'nope'"),
        ({"position": -1}, "position must be an integer >= 0; got -1"),
        (
            {"position": 0, "decision_id": None},
            "position must be given only together with decision_id; got 0",
        ),
        (
            {"created_at": datetime(2024, 5, 1)},
            "created_at must be a timezone-aware datetime (naive datetimes are refused; use UTC);"
            " got datetime.datetime(2024, 5, 1, 0, 0)",
        ),
    ],
)
def test_event_fields_are_refused_with_their_message(changes: dict, message: str) -> None:
    assert refusal(event(**changes), EventCreate) == message


# ---- the checks on their own ---------------------------------------------------------------------


class NoOffset(tzinfo):
    """A time zone that does not know its offset (``utcoffset`` None): not aware."""

    def utcoffset(self, dt: datetime | None) -> None:
        return None


def test_times_that_are_not_aware_datetimes() -> None:
    message = r"^until must be a timezone-aware datetime; got '2024-05-01'$"
    with pytest.raises(LogValidationError, match=message):
        check_aware_utc("2024-05-01", "until")
    naive = (
        r"^created_at must be a timezone-aware datetime \(naive datetimes are refused; use UTC\)"
    )
    with pytest.raises(LogValidationError, match=naive):
        check_aware_utc(datetime(2024, 5, 1, tzinfo=NoOffset()), "created_at")
    with pytest.raises(LogValidationError, match=naive):
        check_record_time(datetime(1960, 1, 1), "created_at")  # naive, and out of range too
    with pytest.raises(LogValidationError, match=r"^created_at must be a timezone-aware datetime;"):
        check_record_time("2024-05-01T00:00:00Z", "created_at")
    late = datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-2)))
    message = (
        "until must be a timezone-aware datetime from 1970-01-01T00:00:00Z up to (not including) "
        "2262-01-01T00:00:00Z; got '9999-12-31T23:00:00-02:00'"
    )
    with pytest.raises(LogValidationError) as info:
        check_aware_utc(late, "until")
    assert str(info.value) == message


@pytest.mark.parametrize("value", [True, "3", -1, 2.0])
def test_non_negative_int_refuses_bools_strings_and_floats(value: object) -> None:
    with pytest.raises(LogValidationError, match=r"^position must be an integer >= 0; got "):
        check_non_negative_int(value, "position")


@pytest.mark.parametrize("value", ["0.5", None, 0.0, 1.0000001, float("nan")])
def test_probability_refusals(value: object) -> None:
    with pytest.raises(LogValidationError, match=r"^p must be in \(0, 1\]; got "):
        check_probability(value, "p")


def test_probability_of_one_and_an_int_are_accepted() -> None:
    assert check_probability(1.0, "p") == 1.0
    assert check_probability(1, "p") == 1


def test_json_values_that_are_not_flat_go_through_a_round_trip() -> None:
    assert to_json_value({1: 0.5}, "exploration") == {"1": 0.5}
    assert to_json_value([1, np.int64(2)], "exploration") == [1, 2]
    assert to_json_value({"eps": 0.5, "nested": {"a": 1}}, "exploration") == {
        "eps": 0.5, "nested": {"a": 1},
    }  # fmt: skip


def test_exploration_must_be_a_dict() -> None:
    with pytest.raises(LogValidationError) as info:
        validate_decision(unchecked(changed(payload(), exploration=[1])))
    assert str(info.value) == "exploration must be a JSON object (dict); got [1]"


def test_an_error_inside_a_list_of_records_names_its_index() -> None:
    bad = changed(payload(), 0, propensity=1.5)
    with pytest.raises(ValidationError) as info:
        TypeAdapter(list[DecisionCreate]).validate_python([payload(), bad])
    error = from_pydantic_error(info.value)
    assert str(error) == "[1].slate[0].propensity must be in (0, 1]; got 1.5"
    assert error.field == "[1].slate[0].propensity"


def test_a_record_that_is_not_an_object_is_named() -> None:
    with pytest.raises(ValidationError) as info:
        DecisionCreate.model_validate(None)
    assert str(from_pydantic_error(info.value)) == (
        "<record> must be a valid dictionary or object to extract fields from; got None"
    )


class Even(BaseModel):
    """A model whose validator raises a plain ValueError, as pydantic reports it."""

    x: int

    @field_validator("x")
    @classmethod
    def _even(cls, x: int) -> int:
        if x % 2:
            raise ValueError("an even number")
        return x


def test_a_plain_value_error_loses_pydantics_lead() -> None:
    with pytest.raises(ValidationError) as info:
        Even.model_validate({"x": 3})
    assert str(from_pydantic_error(info.value)) == "x must be an even number; got 3"
