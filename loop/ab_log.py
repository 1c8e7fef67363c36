"""An A/B experiment read back from the propensity log: one row per decision of the experiment
with its arm and reward (the input of ``ope.ab.analyze``), and the gate's prediction stored
earlier for a candidate, so that the online result is set beside the offline one."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from loop.experiment import ARM_SEPARATOR
from ope.gate import NOT_READY, READY
from proplog.frames import decision_frame, slate_frame
from proplog.schema import OpeReport


def experiment_rows(engine: Engine, experiment: str, reward: str) -> pd.DataFrame:
    """One row per decision of ``experiment``: arm, user_id, model_version, created_at and
    reward (``plays``: rec plays on the slate; ``play_value``: the plays' summed value)."""
    decisions = decision_frame(session_or_engine=engine)
    prefix = f"{experiment}{ARM_SEPARATOR}"
    decisions = decisions[decisions["arm"].fillna("").str.startswith(prefix)]
    if decisions.empty:
        raise ValueError(f"no decision in the log has an arm of experiment {experiment!r}")
    slates = slate_frame(session_or_engine=engine)
    slates = slates[slates["decision_id"].isin(decisions["decision_id"])]
    column = "played" if reward == "plays" else "play_value"
    per_decision = slates.groupby("decision_id")[column].sum()
    return pd.DataFrame(
        {
            "decision_id": decisions["decision_id"].to_numpy(),
            "arm": decisions["arm"].str.slice(len(prefix)).to_numpy(),
            "user_id": decisions["user_id"].to_numpy(),
            "model_version": decisions["model_version"].to_numpy(),
            "created_at": decisions["created_at"].to_numpy(),
            "reward": per_decision.reindex(decisions["decision_id"]).fillna(0.0).to_numpy(),
        }
    )


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
