"""Serving the simulated world through the real decision service for the A/B simulations:
requests decided by ``loop.service.DecisionService`` (an experiment's arms or one policy),
recorded in the log with the world's plays as events, and, for an experiment, the world's true
value of every arm on each request (the A/B's truth: the mean of V_treatment − V_control over
the experiment's requests). Also the candidate models the simulated experiments compare.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import Engine
from sqlmodel import Session

from explore import EpsilonGreedySlate, Policy
from fm_core import PopularityAffinityScorer, Scorer
from loop.context import RequestContext, history_from_events
from loop.experiment import LiveExperiment
from loop.service import DecisionService
from loop.sim_bridge import catalog_from_world, decision_input, respond_and_log
from proplog.schema import DecisionCreate
from proplog.store import user_history
from sim import Request, World
from sim.clock import to_datetime


@dataclass
class ArmTruth:
    """Per request of an experiment, each arm's true expected reward under the world."""

    values: dict[str, list[float]] = field(default_factory=dict)

    def add(self, arm: str, value: float) -> None:
        self.values.setdefault(arm, []).append(value)

    def difference(self, treatment: str, control: str) -> float:
        return float(np.mean(self.values[treatment]) - np.mean(self.values[control]))


def policy_value(
    world: World, request: Request, candidates: np.ndarray, scores: np.ndarray, policy: Policy,
    k: int, rng: np.random.Generator,
) -> float:  # fmt: skip
    """The policy's true expected reward on the request: exact from its marginals, or, for a
    policy without exact marginals, the expected reward of one slate it samples (unbiased)."""
    try:
        return world.policy_value(request, candidates, policy.marginals(scores, k))
    except (NotImplementedError, ValueError):
        slate = policy.decide(scores, k, rng)
        return world.expected_reward(request, candidates[np.asarray(slate.indices)])


def _arm_truth(
    world: World, experiment: LiveExperiment, session: Session, request: Request,
    record: DecisionCreate, truth: ArmTruth, rng: np.random.Generator,
) -> None:  # fmt: skip
    history = history_from_events(
        user_history(session=session, user_id=record.user_id, before=record.created_at)
    )
    scoring = RequestContext.of_logged(record).score_request(
        when=record.created_at, history=history
    )
    candidates = np.asarray(record.candidate_ids, dtype=np.int64)
    for name, arm in experiment.arms.items():
        scores = arm.scorer.score([scoring], [candidates])[0]
        value = policy_value(world, request, candidates, scores, arm.policy, len(record.slate), rng)
        truth.add(name, value)


OnDecision = Callable[[Session, Request, DecisionCreate], None]
"""Sees each recorded decision (with its session and the world's request) before the world's
state moves on."""


def serve_world(
    world: World, service: DecisionService, engine: Engine, *, n: int, k: int, start: float,
    end: float, rng: np.random.Generator, truth: ArmTruth | None = None,
    on_decision: OnDecision | None = None,
) -> None:  # fmt: skip
    """``n`` world requests in [start, end) days decided by ``service`` (its experiment's arms
    when it has one), recorded with the world's plays; with ``truth``, every arm's true value
    of each request is added to it; ``on_decision`` sees each recorded decision."""
    experiment = service.experiment
    requests = world.sample_requests(n, start=start, end=end, rng=rng)
    with Session(engine) as session:
        for request in requests:
            decision_id = str(uuid.UUID(bytes=rng.bytes(16), version=4))
            record = service.decide(
                session=session,
                request=decision_input(request, k=k, decision_id=decision_id),
                now=to_datetime(request.t),
            ).record
            if truth is not None and experiment is not None:
                _arm_truth(world, experiment, session, request, record, truth, rng)
            if on_decision is not None:
                on_decision(session, request, record)
            respond_and_log(world, request, record, rng, session)


def uniform_service(world: World) -> DecisionService:
    """Uniform-random logging (ε = 1 over every candidate): the pre-period the gate reads."""
    scorer = PopularityAffinityScorer(catalog_from_world(world), model_version="uniform")
    return DecisionService(
        scorer=scorer, policy=EpsilonGreedySlate(epsilon=1.0, pool=None, name="uniform")
    )


def variant(base: PopularityAffinityScorer, *, scale: float, noise: float, version: str,
            rng: np.random.Generator) -> Scorer:  # fmt: skip
    """A candidate model: ``base`` with its coefficients × ``scale`` plus Gaussian noise of
    ``noise`` times their mean magnitude, and its fitted counts, genre prior and context lifts
    (scale 1 and noise 0 scores as ``base`` does)."""
    model = PopularityAffinityScorer(base.catalog, model_version=version)
    spread = float(np.abs(base.coef_).mean())
    model.coef_ = base.coef_ * scale + rng.normal(0.0, noise * spread, size=base.coef_.shape)
    model.play_counts_ = base.play_counts_.copy()
    model.genre_prior_ = base.genre_prior_.copy()
    model.daypart_lift_ = base.daypart_lift_.copy()
    model.devices_ = base.devices_
    model.device_lift_ = base.device_lift_.copy()
    return model
