"""The guards tested in the simulated world, through the real decision service:

- ``srm_served``: two experiments planned 50/50 in a world with many members, one served at
  50/50 and one at ``broken_shares`` (55/45), each analysed by ``loop.ab_analysis`` (does the
  SRM check flag the broken one and pass the correct one?), then the false-alarm and detection
  rates of the check over repeated assignments of the same members (``loop.ab_sim_repeated``).
- ``peeking``: an A/A test (everyone served by the production model and policy) analysed at
  the end of every day over repeated assignments: the error rates of the fixed-horizon interval
  and the confidence sequence under daily peeking, and CUPED's width against the unadjusted one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import Engine

from explore import EpsilonGreedySlate
from fm_core import PopularityAffinityScorer
from loop.ab_analysis import AnalysisSettings, run_analysis
from loop.ab_log import pre_period_covariates, window_rows
from loop.ab_planning import PlanRequest, make_plan
from loop.ab_sim_repeated import PeekingResult, Rate, null_peeking, srm_rate
from loop.ab_sim_serve import serve_world, uniform_service
from loop.experiment import ExperimentSettings, load_experiment
from loop.retrain import fit_model
from loop.service import DecisionService
from loop.sim_bridge import catalog_from_world
from loop.windows import read_window, training_impressions
from ope.ab_srm import SrmCheck
from sim import World, WorldConfig
from sim.clock import to_datetime

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GuardConfig:
    """World and sizes of the guards' runs."""

    seed: int = 0
    n_items: int = 80
    n_users: int = 3000
    k: int = 5
    pool: int = 20
    pre_decisions: int = 600
    pre_days: float = 7.0
    decisions: int = 6000
    days: int = 7
    runs: int = 1000
    srm_alpha: float = 0.001
    broken_shares: tuple[float, float] = (0.55, 0.45)
    alpha: float = 0.05


def _world_and_production(engine: Engine, config: GuardConfig, rng: np.random.Generator) -> tuple:
    world = World(WorldConfig(seed=config.seed, n_items=config.n_items, n_users=config.n_users))
    serve_world(world, uniform_service(world), engine, n=config.pre_decisions, k=config.k,
                start=0.0, end=config.pre_days, rng=rng)  # fmt: skip
    window = read_window(engine, until=to_datetime(config.pre_days))
    production = fit_model(
        training_impressions(window), catalog_from_world(world), model="baseline",
        version="production",
    ).scorer  # fmt: skip
    assert isinstance(production, PopularityAffinityScorer)
    return world, production


@dataclass(frozen=True)
class SrmServed:
    """The two served experiments' checks and the repeated rates."""

    correct: SrmCheck
    broken: SrmCheck
    false_alarms: Rate
    detections: Rate
    users: int
    false_alarms_at_05: Rate

    def as_dict(self) -> dict[str, Any]:
        return {
            "correct": self.correct.as_dict(), "broken": self.broken.as_dict(),
            "false_alarms": self.false_alarms.as_dict(), "detections": self.detections.as_dict(),
            "users": self.users, "false_alarms_at_05": self.false_alarms_at_05.as_dict(),
        }  # fmt: skip


def srm_served(engine: Engine, config: GuardConfig, work: Any) -> SrmServed:
    """Serve a correct and a broken experiment (both planned 50/50) and check each."""
    rng = np.random.default_rng(config.seed)
    world, production = _world_and_production(engine, config, rng)
    path = production.save(work / "production.npz")
    planned = {"control": 0.5, "treatment": 0.5}
    checks = {}
    for i, (label, shares) in enumerate(
        (("correct", (0.5, 0.5)), ("broken", config.broken_shares))
    ):
        name = f"srm-{label}-{config.seed}"
        start = config.pre_days + i * config.days
        request = PlanRequest(experiment=name, shares=planned, days=config.pre_days,
                              srm_alpha=config.srm_alpha, until=to_datetime(start))  # fmt: skip
        make_plan(engine, request)
        settings = ExperimentSettings(
            name=name,
            arms=[{"name": arm, "share": share, "model_path": path, "pool": config.pool}
                  for arm, share in zip(planned, shares, strict=True)],
        )  # fmt: skip
        live = load_experiment(settings, scorers={"control": production, "treatment": production})
        service = DecisionService(scorer=production, policy=live.control.policy, experiment=live)
        serve_world(world, service, engine, n=config.decisions, k=config.k, start=start,
                    end=start + config.days, rng=rng)  # fmt: skip
        checks[label] = run_analysis(engine, AnalysisSettings(experiment=name)).srm
    rows = window_rows(engine, "plays", since=to_datetime(config.pre_days), until=None)
    users = rows["user_id"].unique()
    return SrmServed(
        correct=checks["correct"], broken=checks["broken"],
        false_alarms=srm_rate(users, planned=planned, served=planned, runs=config.runs,
                              alpha=config.srm_alpha),
        detections=srm_rate(users, planned=planned,
                            served=dict(zip(planned, config.broken_shares, strict=True)),
                            runs=config.runs, alpha=config.srm_alpha),
        users=len(users),
        false_alarms_at_05=srm_rate(users, planned=planned, served=planned, runs=config.runs,
                                    alpha=0.05, prefix="srm05"),
    )  # fmt: skip


def peeking(engine: Engine, config: GuardConfig) -> tuple[PeekingResult, float]:
    """An A/A log served by production for ``days`` days after the pre-period, re-randomized
    ``runs`` times and looked at daily; returns the result and the τ² planned before it."""
    rng = np.random.default_rng(config.seed + 1)
    world, production = _world_and_production(engine, config, rng)
    service = DecisionService(scorer=production, policy=EpsilonGreedySlate(epsilon=0.1,
                              pool=config.pool))  # fmt: skip
    start = config.pre_days
    per_day = np.diff(np.linspace(0, config.decisions, config.days + 1).round().astype(int))
    for day, n in enumerate(per_day):
        serve_world(world, service, engine, n=int(n), k=config.k, start=start + day,
                    end=start + day + 1, rng=rng)  # fmt: skip
    planned = make_plan(engine, PlanRequest(experiment="aa", shares={"control": 0.5, "b": 0.5},
                                            days=config.pre_days, until=to_datetime(start)),
                        store=False)  # fmt: skip
    rows = window_rows(engine, "plays", since=to_datetime(start), until=None)
    covariates = pre_period_covariates(engine, before=to_datetime(start))
    ends = [to_datetime(start + day + 1) for day in range(config.days)]
    result = null_peeking(rows, covariates, look_ends=ends, runs=config.runs,
                          tau2=planned.plan.tau2, alpha=config.alpha)  # fmt: skip
    return result, planned.plan.tau2
