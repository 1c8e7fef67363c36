"""The store refuses bad decisions and events, names the field, and writes nothing."""

from __future__ import annotations

import copy
import math
import re
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import Session
from store_inputs import SLATE_REFUSALS, T0, Mutation, count_rows, decision_payload, slate_set

from proplog.errors import LogValidationError, UnknownDecisionError
from proplog.store import (
    record_batch,
    record_decision,
    record_decisions,
    record_event,
    record_events,
)

DECISION_ID = "6f1c2a8e-3b7d-4c1e-9a2f-0d5e8b7c6a41"


def good_decision() -> dict[str, Any]:
    return decision_payload(decision_id=DECISION_ID)


def good_event() -> dict[str, Any]:
    return {
        "event_id": "ev-1",
        "created_at": T0 + timedelta(minutes=1),
        "user_id": "u1",
        "item_id": 30,
        "kind": "play",
        "value": 120.0,
        "source": "rec",
        "decision_id": DECISION_ID,
        "position": 1,
    }


def set_(key: str, value: Any) -> Mutation:
    def mutate(d: dict[str, Any]) -> None:
        d[key] = value

    return mutate


def set_positions(*positions: int) -> Mutation:
    def mutate(d: dict[str, Any]) -> None:
        for item, position in zip(d["slate"], positions, strict=True):
            item["position"] = position

    return mutate


def drop_last_score(d: dict[str, Any]) -> None:
    d["candidate_scores"].pop()


def drop(key: str) -> Mutation:
    def mutate(d: dict[str, Any]) -> None:
        del d[key]

    return mutate


BAD_DECISIONS = [
    pytest.param(slate_set(1, "propensity", 0.0), "slate[1].propensity", id="propensity-zero"),
    pytest.param(slate_set(0, "propensity", 1.5), "slate[0].propensity", id="propensity-above-one"),
    pytest.param(slate_set(2, "propensity", math.nan), "slate[2].propensity", id="propensity-nan"),
    pytest.param(
        slate_set(1, "propensity", None), "slate[1].propensity", id="propensity-missing-when-exact"
    ),
    pytest.param(
        slate_set(1, "cond_propensity", -0.25), "slate[1].cond_propensity", id="cond-negative"
    ),
    pytest.param(
        slate_set(2, "prefix_propensity", 0.5 * 0.25 * 0.2 * 1.01),
        "slate[2].prefix_propensity",
        id="prefix-inconsistent",
    ),
    pytest.param(
        slate_set(0, "prefix_propensity", 0.4), "slate[0].prefix_propensity", id="prefix0-not-cond0"
    ),
    pytest.param(slate_set(1, "item_id", 20), "slate[1].item_id", id="duplicate-slate-item"),
    pytest.param(slate_set(2, "item_id", 999), "slate[2].item_id", id="unknown-item-id"),
    pytest.param(set_positions(1, 2, 3), "slate[0].position", id="positions-one-based"),
    pytest.param(set_positions(0, 2, 1), "slate[1].position", id="positions-out-of-order"),
    pytest.param(slate_set(0, "item_id", "abc"), "slate[0].item_id", id="item-id-not-int"),
    pytest.param(slate_set(0, "score", math.inf), "slate[0].score", id="slate-score-infinite"),
    pytest.param(drop_last_score, "candidate_scores", id="candidate-length-mismatch"),
    pytest.param(
        set_("candidate_scores", [0.9, math.nan, 0.7, 0.1]),
        "candidate_scores[1]",
        id="candidate-score-nan",
    ),
    pytest.param(
        set_("candidate_ids", [10, 20, 30, 20]), "candidate_ids[3]", id="duplicate-candidate"
    ),
    pytest.param(
        set_("candidate_ids", [10, 20, 30, 2**63]), "candidate_ids[3]", id="candidate-beyond-int64"
    ),
    pytest.param(set_("slate", []), "slate", id="empty-slate"),
    pytest.param(set_("decision_id", "not-a-uuid"), "decision_id", id="decision-id-not-uuid"),
    pytest.param(set_("created_at", datetime(2024, 5, 1, 12)), "created_at", id="naive-datetime"),
    pytest.param(set_("surface", "homepage"), "surface", id="unknown-surface"),
    pytest.param(set_("user_id", ""), "user_id", id="empty-user-id"),
    pytest.param(set_("user_id", "u" * 129), "user_id", id="user-id-too-long"),
    pytest.param(
        set_("exploration", {"epsilon": math.nan}), "exploration", id="exploration-not-json"
    ),
    pytest.param(drop("policy_name"), "policy_name", id="missing-policy-name"),
]


@pytest.mark.parametrize(("mutate", "field"), BAD_DECISIONS)
def test_bad_decision_is_refused_naming_the_field_and_nothing_is_written(
    engine: Engine, mutate: Mutation, field: str
) -> None:
    decision = good_decision()
    mutate(decision)
    with (
        Session(engine) as session,
        pytest.raises(LogValidationError, match=re.escape(field)) as info,
    ):
        record_decision(session=session, decision=decision)
    assert info.value.field == field
    assert count_rows(engine, "decision") == 0
    assert count_rows(engine, "slate_item") == 0


def test_good_decision_fixture_is_accepted(engine: Engine) -> None:
    """The bad-input table only means something if the unmutated record is valid."""
    with Session(engine) as session:
        assert record_decision(session=session, decision=good_decision()).created is True
        assert record_event(session=session, event=good_event()).created is True


def event_set(**changes: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def mutate(e: dict[str, Any]) -> dict[str, Any]:
        return {**e, **changes}

    return mutate


BAD_EVENTS = [
    pytest.param(
        event_set(decision_id=str(uuid.UUID(int=7))),
        UnknownDecisionError,
        "decision_id",
        id="unknown-decision-id",
    ),
    pytest.param(event_set(position=3), LogValidationError, "position", id="position-not-in-slate"),
    pytest.param(
        event_set(position=1, item_id=10),
        LogValidationError,
        "item_id",
        id="item-disagrees-with-slate",
    ),
    pytest.param(
        event_set(decision_id=None), LogValidationError, "position", id="position-without-decision"
    ),
    pytest.param(
        event_set(position=None, item_id=40),
        LogValidationError,
        "item_id",
        id="no-position-and-item-not-in-slate",
    ),
    pytest.param(event_set(user_id="u2"), LogValidationError, "user_id", id="user-not-decisions"),
    pytest.param(event_set(value=-1.0), LogValidationError, "value", id="negative-value"),
    pytest.param(event_set(value=math.nan), LogValidationError, "value", id="nan-value"),
    pytest.param(event_set(kind="watch"), LogValidationError, "kind", id="unknown-kind"),
    pytest.param(event_set(source="email"), LogValidationError, "source", id="unknown-source"),
    pytest.param(
        event_set(decision_id="nope", position=None),
        LogValidationError,
        "decision_id",
        id="decision-id-not-uuid",
    ),
    pytest.param(
        event_set(created_at=datetime(2024, 5, 1, 12, 1)),
        LogValidationError,
        "created_at",
        id="naive-datetime",
    ),
    pytest.param(event_set(event_id=""), LogValidationError, "event_id", id="empty-event-id"),
]


@pytest.mark.parametrize(("mutate", "error", "field"), BAD_EVENTS)
def test_bad_event_is_refused_and_nothing_is_written(
    engine: Engine,
    mutate: Callable[[dict[str, Any]], dict[str, Any]],
    error: type[Exception],
    field: str,
) -> None:
    with Session(engine) as session:
        record_decision(session=session, decision=good_decision())
        event = mutate(copy.deepcopy(good_event()))
        with pytest.raises(error, match=re.escape(field)):
            record_event(session=session, event=event)
    assert count_rows(engine, "event") == 0
    assert count_rows(engine, "decision") == 1


# ---- the same refusals in batch writes: the batch is all or nothing ------------------------------

OTHER_ID = "6f1c2a8e-3b7d-4c1e-9a2f-0d5e8b7c6a42"


@pytest.mark.parametrize(("mutate", "field"), SLATE_REFUSALS)
def test_bad_decision_in_a_batch_names_its_index_and_writes_nothing(
    engine: Engine, mutate: Mutation, field: str
) -> None:
    good = decision_payload(decision_id=OTHER_ID)
    bad = good_decision()
    mutate(bad)
    with Session(engine) as session:
        with pytest.raises(LogValidationError, match=re.escape(f"decisions[1].{field}")):
            record_decisions(session=session, decisions=[good, bad])
        with pytest.raises(LogValidationError, match=re.escape(f"decisions[1].{field}")):
            record_batch(session=session, decisions=[good, bad], events=[])
    assert count_rows(engine, "decision") == 0
    assert count_rows(engine, "slate_item") == 0


def test_event_for_an_unknown_decision_in_a_batch_writes_nothing(engine: Engine) -> None:
    """The decisions of the same batch are rolled back too."""
    unknown = {**good_event(), "event_id": "ev-2", "decision_id": str(uuid.UUID(int=7))}
    with Session(engine) as session:
        with pytest.raises(UnknownDecisionError, match=re.escape("events[1].decision_id")):
            record_batch(
                session=session, decisions=[good_decision()], events=[good_event(), unknown]
            )
        record_decision(session=session, decision=good_decision())
        with pytest.raises(UnknownDecisionError, match=re.escape("events[1].decision_id")):
            record_events(session=session, events=[good_event(), unknown])
    assert count_rows(engine, "event") == 0
    assert count_rows(engine, "decision") == 1  # only the single write after the failed batch
    assert count_rows(engine, "slate_item") == 3
