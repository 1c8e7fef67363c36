"""The ``model_promotion`` table on each back end: production is the latest row, a promotion is a
compare-and-set on it, promoting production again is a no-op, bad input names the field and
writes nothing."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from proplog.errors import ConflictError, LogValidationError
from proplog.promotions import production_version, promotion_history, record_promotion
from proplog.registry import record_model_version


def register(session: Session, *versions: str) -> None:
    for version in versions:
        record_model_version(
            session=session, version=version, kind="baseline", params={}, metrics={}
        )


def test_production_is_the_latest_row_and_a_replay_is_a_no_op(engine: Engine) -> None:
    with Session(engine) as session:
        register(session, "a", "b")
        assert production_version(session) is None
        first = record_promotion(
            session=session, version="a", action="promote", previous_version=None
        )
        assert first.created and production_version(session) == "a"
        again = record_promotion(
            session=session, version="a", action="promote", previous_version=None
        )
        assert not again.created and again.row.id == first.row.id
        record_promotion(
            session=session, version="b", action="promote", previous_version="a",
            reason="gate 7", gate_report_id=None,
        )  # fmt: skip
        back = record_promotion(
            session=session, version="a", action="rollback", previous_version="b", reason="p99"
        )
        assert back.created and production_version(session) == "a"
        history = promotion_history(session)
    assert [(r.action, r.version, r.previous_version) for r in history] == [
        ("promote", "a", None),
        ("promote", "b", "a"),
        ("rollback", "a", "b"),
    ]


def test_a_stale_predecessor_is_a_conflict(engine: Engine) -> None:
    with Session(engine) as session:
        register(session, "a", "b", "c")
        record_promotion(session=session, version="a", action="promote", previous_version=None)
        record_promotion(session=session, version="b", action="promote", previous_version="a")
        with pytest.raises(ConflictError, match="previous_version"):
            record_promotion(session=session, version="c", action="promote", previous_version="a")
        assert production_version(session) == "b"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"version": "unknown"}, "version"),
        ({"version": ""}, "version"),
        ({"action": "demote"}, "action"),
        ({"forced": True, "reason": "  "}, "reason"),
        ({"forced": "yes"}, "forced"),
        ({"reason": None}, "reason"),
        ({"gate_report_id": "7"}, "gate_report_id"),
        ({"action": "rollback", "previous_version": None}, "previous_version"),
    ],
)
def test_bad_input_names_the_field_and_writes_nothing(
    engine: Engine, change: dict[str, Any], field: str
) -> None:
    with Session(engine) as session:
        register(session, "a")
        given: dict[str, Any] = {"version": "a", "action": "promote", "previous_version": None}
        with pytest.raises(LogValidationError) as caught:
            record_promotion(session=session, **(given | change))
        assert caught.value.field == field
        assert promotion_history(session) == []
