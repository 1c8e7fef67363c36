"""An A/B experiment read back from the propensity log: one row per decision of the experiment
with its arm and reward (the input of ``ope.ab.analyze``), each member's pre-period plays and
decisions (CUPED's covariates), a pre-period window's rows (the plan's noise), and the gate's
prediction stored earlier for a candidate, so that the online result is set beside the offline
one."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from loop.experiment import ARM_SEPARATOR
from ope.gate import NOT_READY, READY
from proplog.frames import decision_frame, event_frame
from proplog.schema import OpeReport

REWARDS = ("plays", "play_value")


def _rewards(
    engine: Engine, decisions: pd.DataFrame, reward: str, until: datetime | None
) -> np.ndarray:
    """Each decision's reward, in the order of ``decisions``, from the events before ``until``
    (None: all), so that a past look sees only the plays made by then: ``plays``, the slate
    positions with a rec play (as ``proplog.frames.slate_frame``'s ``played``); ``play_value``,
    the summed value of those plays."""
    if reward not in REWARDS:
        raise ValueError(f"reward must be one of {', '.join(REWARDS)}; got {reward!r}")
    events = event_frame(session_or_engine=engine, until=until)
    plays = events[
        (events["kind"] == "play")
        & (events["source"] == "rec")
        & events["decision_id"].isin(decisions["decision_id"])
        & events["position"].notna()
    ]
    if reward == "plays":
        per_decision = plays.drop_duplicates(["decision_id", "position"]).groupby("decision_id")
        totals = per_decision.size().astype(np.float64)
    else:
        totals = plays.groupby("decision_id")["value"].sum()
    return totals.reindex(decisions["decision_id"]).fillna(0.0).to_numpy(np.float64)


def experiment_rows(
    engine: Engine, experiment: str, reward: str, *, until: datetime | None = None
) -> pd.DataFrame:
    """One row per decision of ``experiment`` made before ``until`` (None: all): arm, user_id,
    model_version, policy_name, created_at and reward (``plays``: rec plays on the slate;
    ``play_value``: the plays' summed value)."""
    decisions = decision_frame(session_or_engine=engine, until=until)
    prefix = f"{experiment}{ARM_SEPARATOR}"
    decisions = decisions[decisions["arm"].fillna("").str.startswith(prefix)]
    if decisions.empty:
        raise ValueError(f"no decision in the log has an arm of experiment {experiment!r}")
    return pd.DataFrame(
        {
            "decision_id": decisions["decision_id"].to_numpy(),
            "arm": decisions["arm"].str.slice(len(prefix)).to_numpy(),
            "user_id": decisions["user_id"].to_numpy(),
            "model_version": decisions["model_version"].to_numpy(),
            "policy_name": decisions["policy_name"].to_numpy(),
            "created_at": decisions["created_at"].to_numpy(),
            "reward": _rewards(engine, decisions, reward, until),
        }
    )


def window_rows(
    engine: Engine, reward: str, *, since: datetime | None, until: datetime | None
) -> pd.DataFrame:
    """One row per decision in [since, until), whatever its arm: user_id, created_at, reward
    (the pre-period the plan measures its noise on)."""
    decisions = decision_frame(session_or_engine=engine, since=since, until=until)
    if decisions.empty:
        raise ValueError(f"the log holds no decision in [{since}, {until})")
    return pd.DataFrame(
        {
            "user_id": decisions["user_id"].to_numpy(),
            "created_at": decisions["created_at"].to_numpy(),
            "reward": _rewards(engine, decisions, reward, until),
        }
    )


def pre_period_covariates(engine: Engine, *, before: datetime) -> pd.DataFrame:
    """Per member seen before ``before``: ``pre_plays`` (plays from any source: the slate,
    search or direct) and ``pre_decisions`` (decisions made for them); CUPED's covariates."""
    events = event_frame(session_or_engine=engine, until=before)
    plays = events[events["kind"] == "play"].groupby("user_id").size().rename("pre_plays")
    decisions = decision_frame(session_or_engine=engine, until=before)
    made = decisions.groupby("user_id").size().rename("pre_decisions")
    both = pd.concat([plays, made], axis=1).fillna(0.0).astype(np.float64)
    return both.rename_axis("user_id").reset_index()


def prior_prediction(
    engine: Engine, *, candidate: str, baseline: str, before: datetime
) -> dict[str, Any] | None:
    """The latest gate report for ``candidate`` (against ``baseline`` when there is one),
    preferring those stored before ``before``; None when the candidate was never gated."""
    with Session(engine) as session:
        rows = session.exec(
            select(OpeReport)
            .where(OpeReport.candidate == candidate)
            .where(col(OpeReport.decision).in_([READY, NOT_READY]))
            .order_by(col(OpeReport.created_at).desc(), col(OpeReport.id).desc())
        ).all()
    if not rows:
        return None
    ranked = sorted(
        rows,
        key=lambda r: (r.created_at <= before, r.baseline == baseline, r.created_at, r.id or 0),
        reverse=True,
    )
    chosen = ranked[0]
    return {
        "report_id": chosen.id,
        "created_at": chosen.created_at.isoformat(),
        "made_before_experiment": chosen.created_at <= before,
        "baseline": chosen.baseline,
        "decision": chosen.decision,
        "lift": chosen.payload.get("lift", {}),
    }
