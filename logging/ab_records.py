"""A/B tests' plans and analyses in the log (tables ``ab_plan`` and ``ab_analysis``): their
writes, append-only and validated (``LogValidationError`` names the field), and their reads, the
latest plan of an experiment, every analysis of one, and the latest analysis of each experiment
and arm for the agreement tracker. Plain SQLAlchemy Core, so both back ends run the same code.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from sqlalchemy import Engine, Table, insert, select
from sqlmodel import Session

from proplog.errors import LogValidationError
from proplog.schema import AbAnalysis, AbPlan
from proplog.validation import check_name, to_json_value
from proplog.writes import logger, run_write

_PLAN: Table = AbPlan.__table__  # type: ignore[attr-defined]
_ANALYSIS: Table = AbAnalysis.__table__  # type: ignore[attr-defined]
_SHORT = 64
_NAME = 256

_PLAN_NUMBERS = ("alpha", "power", "srm_alpha", "mde", "sigma", "tau2")
_ANALYSIS_NUMBERS = ("observed", "observed_lo", "observed_hi", "sequential_lo", "sequential_hi",
                     "srm_pvalue")  # fmt: skip
_ANALYSIS_OPTIONAL = ("cuped", "cuped_lo", "cuped_hi", "predicted", "predicted_lo", "predicted_hi")


def _number(row: Mapping[str, Any], field: str, *, optional: bool = False) -> float | None:
    value = row.get(field)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise LogValidationError(field, "a number (not NaN)", value)
    return float(value)


def _object(value: Any, field: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise LogValidationError(field, "a JSON object (mapping)", value)
    return to_json_value(dict(value), field)


def _insert(session: Session, table: Table, row: dict[str, Any]) -> int:
    def write() -> int:
        inserted = session.connection().execute(insert(table).values(**row))
        return int(inserted.inserted_primary_key[0])

    return run_write(session, write)


def record_ab_plan(*, session: Session, plan: Mapping[str, Any]) -> int:
    """Store a plan (keys: experiment, reward, shares, alpha, power, srm_alpha, mde, users,
    sigma, tau2, payload) and return its id."""
    shares = plan.get("shares")
    if not isinstance(shares, Mapping) or len(shares) < 2:
        raise LogValidationError("shares", "a mapping of at least 2 arms to shares", shares)
    for arm, share in shares.items():
        check_name(arm, "shares", max_length=_SHORT)
        if isinstance(share, bool) or not isinstance(share, int | float) or not 0 < share <= 1:
            raise LogValidationError(f"shares.{arm}", "a number in (0, 1]", share)
    users = plan.get("users")
    if isinstance(users, bool) or not isinstance(users, int) or users < 2:
        raise LogValidationError("users", "an integer >= 2", users)
    row: dict[str, Any] = {
        "created_at": datetime.now(UTC),
        "experiment": check_name(plan.get("experiment"), "experiment", max_length=_SHORT),
        "reward": check_name(plan.get("reward"), "reward", max_length=32),
        "shares": {str(k): float(v) for k, v in shares.items()},
        "users": users,
        "payload": _object(plan.get("payload", {}), "payload"),
    }
    row |= {field: _number(plan, field) for field in _PLAN_NUMBERS}
    plan_id = _insert(session, _PLAN, row)
    logger.info("stored A/B plan %d for experiment %s", plan_id, row["experiment"])
    return plan_id


def latest_ab_plan(engine: Engine, experiment: str) -> dict[str, Any] | None:
    """The experiment's latest plan as a dict of its columns, or None."""
    query = (
        select(_PLAN)
        .where(_PLAN.c.experiment == experiment)
        .order_by(_PLAN.c.created_at.desc(), _PLAN.c.id.desc())
        .limit(1)
    )
    with engine.connect() as connection:
        found = connection.execute(query).first()
    return None if found is None else dict(found._mapping)


def record_ab_analysis(*, session: Session, analysis: Mapping[str, Any]) -> int:
    """Store one arm's analysis (the columns of ``ab_analysis`` but id and created_at) and
    return its id."""
    row: dict[str, Any] = {"created_at": datetime.now(UTC)}
    for field in ("experiment", "arm", "control"):
        row[field] = check_name(analysis.get(field), field, max_length=_SHORT)
    for field in ("candidate", "baseline"):
        row[field] = check_name(analysis.get(field), field, max_length=_NAME)
    row["reward"] = check_name(analysis.get("reward"), "reward", max_length=32)
    until = analysis.get("until")
    if until is not None and not (isinstance(until, datetime) and until.tzinfo is not None):
        raise LogValidationError("until", "an aware datetime or None", until)
    row["until"] = until
    for field in ("decisions", "users"):
        value = analysis.get(field)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise LogValidationError(field, "an integer >= 0", value)
        row[field] = value
    row |= {field: _number(analysis, field) for field in _ANALYSIS_NUMBERS}
    row |= {field: _number(analysis, field, optional=True) for field in _ANALYSIS_OPTIONAL}
    report = analysis.get("prediction_report_id")
    if report is not None and (isinstance(report, bool) or not isinstance(report, int)):
        raise LogValidationError("prediction_report_id", "an integer or None", report)
    row["prediction_report_id"] = report
    flagged = analysis.get("srm_flagged")
    if not isinstance(flagged, bool):
        raise LogValidationError("srm_flagged", "a boolean", flagged)
    row["srm_flagged"] = flagged
    row["payload"] = _object(analysis.get("payload", {}), "payload")
    analysis_id = _insert(session, _ANALYSIS, row)
    logger.info("stored A/B analysis %d of %s:%s", analysis_id, row["experiment"], row["arm"])
    return analysis_id


def ab_analyses(engine: Engine, *, experiment: str | None = None) -> pd.DataFrame:
    """Every stored analysis (of ``experiment`` when given), oldest first, payload left out."""
    columns = [c for c in _ANALYSIS.c if c.name != "payload"]
    query = select(*columns).order_by(_ANALYSIS.c.created_at, _ANALYSIS.c.id)
    if experiment is not None:
        query = query.where(_ANALYSIS.c.experiment == experiment)
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    return pd.DataFrame([dict(r._mapping) for r in rows], columns=[c.name for c in columns])


def latest_ab_analyses(engine: Engine) -> pd.DataFrame:
    """The latest analysis of each experiment and arm, in the order their experiments were
    first analysed: the agreement tracker's rows."""
    every = ab_analyses(engine)
    if every.empty:
        return every
    first = every.groupby("experiment")["id"].transform("min")
    latest = every.sort_values("id").groupby(["experiment", "arm"], sort=False).tail(1)
    return latest.assign(_first=first).sort_values(["_first", "arm"]).drop(columns="_first")


__all__ = [
    "ab_analyses",
    "latest_ab_analyses",
    "latest_ab_plan",
    "record_ab_analysis",
    "record_ab_plan",
]
