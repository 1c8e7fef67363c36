"""A sequence of A/B experiments in the simulated world, each run the way a team runs one: a
candidate model and policy gated by OPE on the pre-period log (the prediction, stored), the test
planned before it starts (stored shares and τ²), its arms served through the real decision
service and logged, analysed at the end of every day (SRM, fixed-horizon and always-valid
intervals, CUPED; stored), all set against the world's truth: the mean over the experiment's
requests of V_treatment − V_control, each arm's exact expected reward.

The pre-period is uniform-random logging, the control is a model fitted on it, and each
treatment is that model with scaled and perturbed coefficients served by a policy family taken
in turn from ``policies``. One experiment may be served at other shares than it was planned
with (``broken``: planned 50/50, served ``broken_shares``), which the SRM check should flag.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Engine
from sqlmodel import Session

from fm_core import PopularityAffinityScorer
from loop.ab_analysis import AnalysisSettings, ExperimentAnalysis, run_analysis
from loop.ab_planning import PlanRequest, make_plan
from loop.ab_sim_serve import ArmTruth, serve_world, uniform_service, variant
from loop.experiment import ExperimentSettings, load_experiment
from loop.ope_eval import EvaluationSettings, evaluate, gate_evaluation
from loop.ope_targets import TargetPolicy
from loop.retrain import fit_model
from loop.service import DecisionService
from loop.sim_bridge import catalog_from_world
from loop.windows import read_window, training_impressions
from proplog.registry import record_ope_report
from sim import World, WorldConfig
from sim.clock import to_datetime

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AbSimulationConfig:
    """The world, the pre-period, and the experiments (sizes, lengths, arms)."""

    seed: int = 0
    n_items: int = 80
    n_users: int = 300
    k: int = 5
    pool: int = 20
    pre_decisions: int = 1500
    pre_days: float = 10.0
    experiments: int = 10
    decisions: int = 900
    days: int = 7
    scales: tuple[float, float] = (-0.5, 1.5)
    noise: float = 0.5
    policies: tuple[str, ...] = ("epsilon_greedy", "greedy", "random_insertion")
    broken: int | None = None
    broken_shares: tuple[float, float] = (0.55, 0.45)

    def __post_init__(self) -> None:
        for name in ("n_items", "n_users", "k", "pool", "pre_decisions", "experiments",
                     "decisions", "days"):  # fmt: skip
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}")
        if self.broken is not None and not 0 <= self.broken < self.experiments:
            raise ValueError(f"broken must be in [0, {self.experiments}); got {self.broken}")


@dataclass(frozen=True)
class SimulatedExperiment:
    """One experiment's truth, its gate decision, and its last analysis (all looks stored)."""

    name: str
    policy: str
    true_difference: float
    gate_decision: str
    analysis: ExperimentAnalysis
    looks: list[dict[str, Any]] = field(default_factory=list)

    def row(self) -> dict[str, Any]:
        one = self.analysis.arms["treatment"]
        lift = (one.prediction or {}).get("lift", {})
        return {
            "experiment": self.name, "policy": self.policy, "truth": self.true_difference,
            "gate": self.gate_decision, "predicted": lift.get("value"),
            "predicted_lo": lift.get("lo"), "predicted_hi": lift.get("hi"),
            "observed": one.fixed.value, "observed_lo": one.fixed.lo, "observed_hi": one.fixed.hi,
            "sequential_lo": one.sequential.running_lo, "sequential_hi": one.sequential.running_hi,
            "cuped": one.cuped.value if one.cuped else None,
            "cuped_lo": one.cuped.lo if one.cuped else None,
            "cuped_hi": one.cuped.hi if one.cuped else None,
            "srm_pvalue": self.analysis.srm.pvalue, "srm_flagged": self.analysis.srm.flagged,
            "users": sum(a.users for a in self.analysis.result.arms.values()),
            "decisions": sum(a.decisions for a in self.analysis.result.arms.values()),
        }  # fmt: skip


def _gate(engine: Engine, window: Any, control: TargetPolicy, treatment: TargetPolicy) -> str:
    """The gate's evaluation of the treatment against the control on the pre-period, stored
    as the ope_report the analysis later finds (the prediction)."""
    evaluation = evaluate(window, treatment, control, settings=EvaluationSettings())
    decision = gate_evaluation(evaluation)
    payload = decision.payload() | {
        "candidate": treatment.name, "baseline": control.name, "evaluation": evaluation.record(),
    }  # fmt: skip
    with Session(engine) as session:
        record_ope_report(
            session=session, candidate=treatment.name, baseline=control.name, payload=payload,
            decision=decision.decision, reasons=decision.reasons,
        )  # fmt: skip
    return decision.decision


def run_sequence(
    engine: Engine, config: AbSimulationConfig, work: Path
) -> list[SimulatedExperiment]:
    """Run the pre-period and every experiment on the (empty) log behind ``engine``; model
    files go to ``work``."""
    rng = np.random.default_rng(config.seed)
    world = World(WorldConfig(seed=config.seed, n_items=config.n_items, n_users=config.n_users))
    serve_world(world, uniform_service(world), engine, n=config.pre_decisions, k=config.k,
                start=0.0, end=config.pre_days, rng=rng)  # fmt: skip
    pre_end = to_datetime(config.pre_days)
    window = read_window(engine, until=pre_end)
    production = fit_model(
        training_impressions(window), catalog_from_world(world), model="baseline",
        version="production",
    ).scorer  # fmt: skip
    assert isinstance(production, PopularityAffinityScorer)
    control_path = production.save(work / "production.npz")
    scales = np.linspace(*config.scales, config.experiments)
    out = []
    for i, scale in enumerate(scales):
        name = f"sim-{config.seed}-{i:02d}"
        family = config.policies[i % len(config.policies)]
        model = variant(production, scale=float(scale), noise=config.noise, version=f"{name}-model",
                        rng=rng)  # fmt: skip
        assert isinstance(model, PopularityAffinityScorer)
        path = model.save(work / f"{name}.npz")
        planned = {"control": 0.5, "treatment": 0.5}
        served = planned if i != config.broken else dict(
            zip(planned, config.broken_shares, strict=True))  # fmt: skip
        settings = ExperimentSettings(
            name=name,
            arms=[
                {"name": "control", "share": served["control"], "model_path": control_path,
                 "pool": config.pool},
                {"name": "treatment", "share": served["treatment"], "model_path": path,
                 "policy": family, "pool": config.pool, "epsilon": 0.05},
            ],
        )  # fmt: skip
        live = load_experiment(settings)
        targets = {arm: TargetPolicy(name=a.scorer.model_version, scorer=a.scorer,
                                     policy=a.policy) for arm, a in live.arms.items()}  # fmt: skip
        decision = _gate(engine, window, targets["control"], targets["treatment"])
        start = config.pre_days + i * config.days
        make_plan(engine, PlanRequest(experiment=name, shares=planned, days=config.days,
                                      until=to_datetime(start)))  # fmt: skip
        service = DecisionService(scorer=live.control.scorer, policy=live.control.policy,
                                  experiment=live)  # fmt: skip
        truth = ArmTruth()
        per_day = np.diff(np.linspace(0, config.decisions, config.days + 1).round().astype(int))
        looks = []
        for day, n in enumerate(per_day):
            serve_world(world, service, engine, n=int(n), k=config.k, start=start + day,
                        end=start + day + 1, rng=rng, truth=truth)  # fmt: skip
            until = to_datetime(start + day + 1)
            analysis = run_analysis(engine, AnalysisSettings(experiment=name, until=until))
            one = analysis.arms["treatment"]
            looks.append({"day": day + 1, "fixed": one.fixed.as_dict(),
                          "sequential": one.sequential.as_dict()})  # fmt: skip
        out.append(SimulatedExperiment(
            name=name, policy=family, true_difference=truth.difference("treatment", "control"),
            gate_decision=decision, analysis=analysis, looks=looks,
        ))  # fmt: skip
        logger.info("experiment %s done: truth %+.4f", name, out[-1].true_difference)
    return out
