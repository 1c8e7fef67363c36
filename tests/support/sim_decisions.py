"""Decisions served through ``DecisionService`` in the simulated world and recorded in a log,
with the world's plays as events: the logs the gate, report and A/B tests read. Also the two
model files those tests compare: a baseline fitted on the log, and the same model with its
coefficients negated (a clearly worse one)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sqlalchemy import Engine

from explore import EpsilonGreedySlate
from fm_core import PopularityAffinityScorer
from loop.ab_sim_serve import serve_world as serve  # the tests' name for it
from loop.retrain import fit_model
from loop.service import DecisionService
from loop.sim_bridge import catalog_from_world
from loop.windows import read_window, training_impressions
from sim import World


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
