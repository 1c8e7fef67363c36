"""A/B plans and analyses in the log, on SQLite and PostgreSQL: the latest plan of an experiment,
every analysis and the latest of each experiment and arm read back as written, and bad records
refused with the field and the expectation."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from proplog.ab_records import (
    ab_analyses,
    latest_ab_analyses,
    latest_ab_plan,
    record_ab_analysis,
    record_ab_plan,
)
from proplog.errors import LogValidationError


def a_plan(**change: Any) -> dict[str, Any]:
    return {
        "experiment": "r1", "reward": "plays", "shares": {"control": 0.5, "new": 0.5},
        "alpha": 0.05, "power": 0.8, "srm_alpha": 0.001, "mde": 0.02, "users": 4000,
        "sigma": 0.7, "tau2": 0.0012, "payload": {"window": "14 days"},
    } | change  # fmt: skip


def an_analysis(**change: Any) -> dict[str, Any]:
    return {
        "experiment": "r1", "arm": "new", "control": "control", "candidate": "m2",
        "baseline": "m1", "reward": "plays", "until": datetime(2026, 1, 9, tzinfo=UTC),
        "decisions": 900, "users": 210, "observed": 0.031, "observed_lo": -0.01,
        "observed_hi": 0.072, "sequential_lo": -0.05, "sequential_hi": 0.11, "cuped": 0.029,
        "cuped_lo": -0.008, "cuped_hi": 0.066, "predicted": 0.04, "predicted_lo": 0.0,
        "predicted_hi": 0.08, "prediction_report_id": None, "srm_pvalue": 0.41,
        "srm_flagged": False, "payload": {"sequential": {"tau2": 0.0012}},
    } | change  # fmt: skip


def test_plans_and_analyses_round_trip(engine: Engine) -> None:
    with Session(engine) as session:
        record_ab_plan(session=session, plan=a_plan())
        second = record_ab_plan(session=session, plan=a_plan(mde=0.03))
        record_ab_plan(session=session, plan=a_plan(experiment="other"))
        record_ab_analysis(session=session, analysis=an_analysis())
        record_ab_analysis(session=session, analysis=an_analysis(experiment="r0", predicted=None,
                           predicted_lo=None, predicted_hi=None))  # fmt: skip
        last = record_ab_analysis(session=session, analysis=an_analysis(observed=0.035))
    plan = latest_ab_plan(engine, "r1")
    assert plan is not None and plan["id"] == second and plan["mde"] == 0.03
    assert plan["shares"] == {"control": 0.5, "new": 0.5} and plan["tau2"] == 0.0012
    assert latest_ab_plan(engine, "nope") is None
    every = ab_analyses(engine, experiment="r1")
    assert list(every["observed"]) == [0.031, 0.035]
    assert every["until"].iloc[0] == datetime(2026, 1, 9, tzinfo=UTC)
    latest = latest_ab_analyses(engine)
    assert list(latest["experiment"]) == ["r1", "r0"]  # in the order first analysed
    assert int(latest["id"].iloc[0]) == last and latest["predicted"].isna().iloc[1]


@pytest.mark.parametrize(
    ("record", "field"),
    [
        (lambda s: record_ab_plan(session=s, plan=a_plan(shares={"a": 1.0})), "shares"),
        (lambda s: record_ab_plan(session=s, plan=a_plan(shares={"a": 0.5, "b": 2})), "shares.b"),
        (lambda s: record_ab_plan(session=s, plan=a_plan(users=1)), "users"),
        (lambda s: record_ab_plan(session=s, plan=a_plan(tau2=float("nan"))), "tau2"),
        (lambda s: record_ab_plan(session=s, plan=a_plan(experiment="")), "experiment"),
        (lambda s: record_ab_analysis(session=s, analysis=an_analysis(arm=None)), "arm"),
        (lambda s: record_ab_analysis(session=s, analysis=an_analysis(observed="x")), "observed"),
        (lambda s: record_ab_analysis(session=s, analysis=an_analysis(decisions=-1)), "decisions"),
        (lambda s: record_ab_analysis(session=s, analysis=an_analysis(until=datetime(2026, 1, 1))),
         "until"),
        (lambda s: record_ab_analysis(session=s, analysis=an_analysis(srm_flagged=1)),
         "srm_flagged"),
        (lambda s: record_ab_analysis(session=s, analysis=an_analysis(payload=[1])), "payload"),
    ],
)  # fmt: skip
def test_bad_records_are_refused_naming_the_field(engine: Engine, record: Any, field: str) -> None:
    with Session(engine) as session, pytest.raises(LogValidationError) as raised:
        record(session)
    assert raised.value.field == field
