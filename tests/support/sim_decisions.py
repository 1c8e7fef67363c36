"""Decisions served through ``DecisionService`` in the simulated world and recorded in a log,
with the world's plays as events: the logs the gate, report and A/B tests read. Also the two
model files those tests compare: a baseline fitted on the log, and the same model with its
coefficients negated (a clearly worse one)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
from sqlalchemy import Engine
from sqlmodel import Session

from explore import EpsilonGreedySlate
from fm_core import PopularityAffinityScorer
from loop.retrain import fit_model
from loop.service import DecisionService
from loop.sim_bridge import catalog_from_world, decision_input, events_from_outcome
from loop.windows import read_window, training_impressions
from proplog.schema import DecisionCreate
from proplog.store import record_events
from sim import Request, World
from sim.clock import to_datetime

OnDecision = Callable[[Session, Request, DecisionCreate], None]


def serve(
    world: World,
    service: DecisionService,
    engine: Engine,
    *,
    n: int,
    k: int,
    start: float,
    end: float,
    rng: np.random.Generator,
    on_decision: OnDecision | None = None,
) -> None:
    """``n`` world requests in [start, end) days decided by ``service`` and answered by the
    world; ``on_decision`` sees each recorded decision before the world's state moves on."""
    requests = world.sample_requests(n, start=start, end=end, rng=rng)
    with Session(engine) as session:
        for request in requests:
            decision_id = str(uuid.UUID(bytes=rng.bytes(16), version=4))
            record = service.decide(
                session=session,
                request=decision_input(request, k=k, decision_id=decision_id),
                now=to_datetime(request.t),
            ).record
            if on_decision is not None:
                on_decision(session, request, record)
            slate = np.array([item.item_id for item in record.slate], dtype=np.int64)
            outcome = world.respond(request, slate, rng)
            events = events_from_outcome(outcome, decision_id=decision_id)
            if events:
                record_events(session=session, events=events)
            world.record(outcome)


def uniform_log(world: World, engine: Engine, *, n: int, k: int, seed: int) -> None:
    """A uniform-random logging run (ε = 1 over every candidate)."""
    scorer = PopularityAffinityScorer(catalog_from_world(world), model_version="untrained")
    service = DecisionService(scorer=scorer, policy=EpsilonGreedySlate(epsilon=1.0, name="uniform"))
    serve(world, service, engine, n=n, k=k, start=0.0, end=5.0, rng=np.random.default_rng(seed))


def fitted_and_reversed(world: World, engine: Engine, out: Path) -> tuple[Path, Path]:
    """Model files: a baseline fitted on the log ("fitted"), and the same with its coefficients
    negated ("reversed"), which ranks the items the users like least first."""
    catalog = catalog_from_world(world)
    fitted = fit_model(
        training_impressions(read_window(engine)), catalog, model="baseline", version="fitted"
    ).scorer
    assert isinstance(fitted, PopularityAffinityScorer)
    reversed_model = PopularityAffinityScorer(catalog, model_version="reversed")
    reversed_model.coef_ = -fitted.coef_
    reversed_model.play_counts_ = fitted.play_counts_.copy()
    return fitted.save(out / "fitted.npz"), reversed_model.save(out / "reversed.npz")
