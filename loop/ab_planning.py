"""Planning an A/B experiment on the log before it starts (``loopbreak ab plan``): the per-user
noise of the reward measured on a pre-period window as long as the test, the MDE at the users
that window saw (or the users an MDE needs), for the treatment with the smallest share against
the control, and the plan stored (``proplog.ab_records``) with the configured shares and the
confidence sequence's τ², which the analyses then use.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import Engine
from sqlmodel import Session

from loop.ab_log import window_rows
from ope.ab_plan import BaselineNoise, Plan, baseline_noise, plan
from ope.ab_srm import DEFAULT_SRM_ALPHA, check_shares
from proplog.ab_records import record_ab_plan
from proplog.frames import decision_frame

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlanRequest:
    """The experiment, its shares and control, the levels, and the pre-period window."""

    experiment: str
    shares: dict[str, float]
    control: str = "control"
    reward: str = "plays"
    alpha: float = 0.05
    power: float = 0.8
    srm_alpha: float = DEFAULT_SRM_ALPHA
    days: float = 14.0
    until: datetime | None = None
    users: int | None = None
    mde: float | None = None


@dataclass(frozen=True)
class StoredPlan:
    """The plan, the pre-period noise it rests on, its window, and the stored row's id."""

    request: PlanRequest
    noise: BaselineNoise
    plan: Plan
    treatment: str
    since: datetime
    until: datetime
    plan_id: int | None

    def document(self) -> dict[str, Any]:
        return {
            "experiment": self.request.experiment,
            "shares": self.request.shares,
            "control": self.request.control,
            "treatment": self.treatment,
            "reward": self.request.reward,
            "window": {"since": self.since.isoformat(), "until": self.until.isoformat()},
            "baseline": self.noise.as_dict(),
            "plan": self.plan.as_dict(),
            "relative_mde": self.plan.mde / self.noise.mean if self.noise.mean else None,
            "srm_alpha": self.request.srm_alpha,
            "plan_id": self.plan_id,
        }


def _last_decision(engine: Engine) -> datetime:
    decisions = decision_frame(session_or_engine=engine)
    if decisions.empty:
        raise ValueError("the log holds no decision to plan from; log a pre-period first")
    return pd.Timestamp(decisions["created_at"].max()).to_pydatetime() + timedelta(seconds=1)


def make_plan(engine: Engine, request: PlanRequest, *, store: bool = True) -> StoredPlan:
    """Measure the pre-period noise, plan, and (``store``) store the plan."""
    shares = check_shares(request.shares)
    if request.control not in shares:
        raise ValueError(f"control arm {request.control!r} is not among the shares {list(shares)}")
    if not request.days > 0:
        raise ValueError(f"days must be > 0; got {request.days}")
    until = request.until or _last_decision(engine)
    since = until - timedelta(days=request.days)
    noise = baseline_noise(window_rows(engine, request.reward, since=since, until=until))
    treatment = min((a for a in shares if a != request.control), key=lambda a: shares[a])
    users = request.users if request.users is not None or request.mde is not None else noise.users
    made = plan(
        sigma=noise.sigma, treatment_share=shares[treatment],
        control_share=shares[request.control], alpha=request.alpha, power=request.power,
        users=users, mde=request.mde,
    )  # fmt: skip
    result = StoredPlan(request, noise, made, treatment, since, until, None)
    if not store:
        return result
    with Session(engine) as session:
        plan_id = record_ab_plan(
            session=session,
            plan={
                "experiment": request.experiment, "reward": request.reward, "shares": shares,
                "alpha": request.alpha, "power": request.power, "srm_alpha": request.srm_alpha,
                "mde": made.mde, "users": made.users, "sigma": noise.sigma, "tau2": made.tau2,
                "payload": result.document(),
            },
        )  # fmt: skip
    return StoredPlan(request, noise, made, treatment, since, until, plan_id)
