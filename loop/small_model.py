"""A small FM + ranker model file, made quickly on a CPU by the project's own training path.

:func:`small_fm_model` runs one warm-up round of the loop on a small simulated world: uniform
slates served through :class:`loop.service.DecisionService` into an in-memory log (the same
decisions and events ``loopbreak demo``'s round 0 writes, without its fsyncs), then the retraining
job's fit (:func:`loop.windows.read_window` → :func:`loop.windows.training_impressions` →
:func:`loop.retrain.fit_model` with ``model="fm"``), with a short FM and ranker schedule. The file
is a normal ``fm_ranker`` model file (:mod:`fm_core.model_archive`): ``loopbreak serve --model``,
:func:`fm_core.load_scorer_file` and the tests open it like any other.

It exists for tests of the FM serving path and for ``loopbreak bench api --model fm``, which need
a real FM file of a catalog the size of the benchmark's (1,000 items by default) in seconds,
not the minutes a demo takes. The model is small and briefly trained: for serving and timing, not
for quality.
"""

from __future__ import annotations

import logging
import time
import uuid
from pathlib import Path

import numpy as np
from sqlmodel import Session

from explore import EpsilonGreedySlate
from fm_core import PopularityAffinityScorer
from loop.retrain import fit_model
from loop.service import DecisionService
from loop.sim_bridge import catalog_from_world, decision_input, respond_and_log
from loop.windows import read_window, training_impressions
from proplog.engine import init_db, make_engine
from sim import World
from sim.clock import to_datetime
from sim.config import WorldConfig

logger = logging.getLogger(__name__)


def small_fm_model(
    path: str | Path,
    *,
    n_items: int = 1000,
    n_users: int = 200,
    decisions: int = 400,
    k: int = 10,
    days: float = 3.0,
    epochs: int = 2,
    seed: int = 0,
    model_version: str = "fm-small",
) -> Path:
    """Write a small FM + ranker model file to ``path`` and return the path.

    ``decisions`` uniform slates of ``k`` are served in ``days`` of a world of ``n_items`` titles
    and ``n_users`` members (seed ``seed``); the FM (d_model 16, one layer) and the ranker train
    ``epochs`` epochs each on the log: about 4 s on one CPU core at the defaults (1 s logging, 1.5 s
    fitting, the rest importing torch and building the world).
    """
    from fm_core.fm_scorer_fit import FMScorerConfig  # imports torch
    from fm_core.model import FMConfig
    from fm_core.ranker import RankerConfig, RankerTrainConfig
    from fm_core.train_fm import TrainConfig

    started = time.perf_counter()
    world = World(WorldConfig(seed=seed, n_items=n_items, n_users=n_users))
    catalog = catalog_from_world(world)
    engine = make_engine("sqlite://")  # in memory: the log lives only for this fit
    init_db(engine)
    rng = np.random.default_rng(seed)
    service = DecisionService(
        scorer=PopularityAffinityScorer(catalog, model_version="untrained"),
        policy=EpsilonGreedySlate(epsilon=1.0, name="uniform"),
    )
    with Session(engine) as session:
        for request in world.sample_requests(decisions, start=0.0, end=days, rng=rng):
            decision_id = str(uuid.UUID(bytes=rng.bytes(16), version=4))
            out = service.decide(
                session=session,
                request=decision_input(request, k=k, decision_id=decision_id),
                now=to_datetime(request.t),
            )
            respond_and_log(world, request, out.record, rng, session)
    logged = time.perf_counter()
    config = FMScorerConfig(
        fm=FMConfig(d_model=16, n_layers=1, n_heads=2, max_len=32, dropout=0.1),
        fm_train=TrainConfig(epochs=epochs, batch_size=64, lr=3e-3, progress=False),
        ranker=RankerConfig(),
        ranker_train=RankerTrainConfig(epochs=epochs, progress=False),
    )
    fitted = fit_model(
        training_impressions(read_window(engine)),
        catalog,
        model="fm",
        version=model_version,
        fm_config=config,
    )
    engine.dispose()
    out_path = fitted.scorer.save(Path(path))  # type: ignore[attr-defined]  # an FMRankerScorer
    logger.info(
        "small FM model %s: %d decisions logged in %.1f s, fitted in %.1f s",
        out_path,
        decisions,
        logged - started,
        time.perf_counter() - logged,
    )
    return out_path
