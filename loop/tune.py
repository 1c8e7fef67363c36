"""``loopbreak tune search-weight``: choose α, the training weight of search-discovered plays.

α is tuned, not guessed. For each α on a grid the baseline scorer is trained on the same
training table (``proplog.training_table``, ``search_weight=α``) and scored on held-out data:

- **on the simulator** (default): the loop logs ``decisions`` decisions with a uniform
  (``epsilon=1``) or ε-greedy policy through ``DecisionService`` into a temporary SQLite log,
  with the world's rec and search plays. Then ``heldout`` fresh requests of the following days
  are drawn (not served, so the world's state is the one they meet), each with its point-in-time
  history from the log. A model's quality is the **true expected reward per request of its
  greedy top-K slate** under the world's ground truth (``World.expected_reward``), the same
  requests for every α. Uniform-random and oracle slates on those requests frame the curve.
- **on real logs** (``--database URL`` with ``--catalog-from MODEL``): the decisions are cut by
  time; the last ``holdout_share`` are held out, and a model's quality is the IPS estimate (with
  its 95% interval) of its ε-greedy policy replayed on the held-out logged decisions
  (``loop.replay.replay_batch``: per-position marginals, summed over the slate).

The best α is the argmax of quality; the whole curve is reported.
"""

from __future__ import annotations

import logging
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine
from sqlmodel import Session
from tqdm import tqdm

from explore import EpsilonGreedySlate
from fm_core import ItemCatalog, PopularityAffinityScorer
from loop.context import HistoryIndex
from loop.replay import replay_batch
from loop.service import DecisionService
from loop.sim_bridge import (
    catalog_from_world,
    decision_input,
    events_from_outcome,
    request_context,
)
from loop.tune_config import DEFAULT_ALPHAS, LogTuneConfig, SimTuneConfig, check_alphas
from loop.windows import LoggedWindow, read_window, training_impressions
from ope import estimate_all
from proplog.engine import init_db, make_engine
from proplog.frames import event_frame
from proplog.store import record_events
from proplog.training_table import TrainingTableConfig, WeightReport, build_training_table
from sim import Request, World
from sim.clock import to_datetime

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CurvePoint:
    """One α: its held-out quality, and what its training table held."""

    alpha: float
    quality: float
    lo: float | None
    hi: float | None
    search_rows: int
    training_rows: int
    ess_share: float


@dataclass(frozen=True)
class TuneResult:
    """The whole curve, the best α, and how quality was measured."""

    alpha: float
    curve: list[CurvePoint]
    mode: str
    quality: str
    references: dict[str, float]
    details: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {
            "alpha": self.alpha,
            "curve": [asdict(p) for p in self.curve],
            "mode": self.mode,
            "quality": self.quality,
            "references": self.references,
            "details": self.details,
        }


def _fit(
    window: LoggedWindow, catalog: ItemCatalog, table: TrainingTableConfig, alpha: float
) -> tuple[PopularityAffinityScorer, WeightReport]:
    config = replace(table, search_weight=alpha)
    report = build_training_table(
        decisions=window.decisions, slates=window.slates, events=window.events, config=config
    ).report
    scorer = PopularityAffinityScorer(catalog, model_version=f"tune-alpha-{alpha:g}")
    scorer.fit(training_impressions(window, config))
    return scorer, report


def _best(curve: list[CurvePoint]) -> float:
    """The α of highest quality (the smallest such α on ties)."""
    return max(curve, key=lambda p: (p.quality, -p.alpha)).alpha


# ---- on the simulator -------------------------------------------------------------------------


def _log_world(
    world: World, engine: Engine, config: SimTuneConfig, rng: np.random.Generator
) -> int:
    """Serve ``config.decisions`` requests with the logging policy; record decisions and plays.
    Returns the number of search plays."""
    catalog = catalog_from_world(world)
    scorer = PopularityAffinityScorer(catalog, model_version="untrained")
    policy = EpsilonGreedySlate(epsilon=config.epsilon, name="logging")
    service = DecisionService(scorer=scorer, policy=policy)
    requests = world.sample_requests(config.decisions, start=0.0, end=config.days, rng=rng)
    search_plays = 0
    with Session(engine) as session:
        for request in tqdm(requests, desc="logging", unit="decision", leave=False, disable=None):
            decision_id = str(uuid.UUID(bytes=rng.bytes(16), version=4))
            out = service.decide(
                session=session,
                request=decision_input(request, k=config.k, decision_id=decision_id),
                now=to_datetime(request.t),
            )
            slate = np.array([s.item_id for s in out.record.slate], dtype=np.int64)
            outcome = world.respond(request, slate, rng)
            events = events_from_outcome(outcome, decision_id=decision_id)
            if events:
                record_events(session=session, events=events)
            search_plays += sum(p.source == "search" for p in outcome.plays)
            world.record(outcome)
    return search_plays


def _heldout_requests(
    world: World, engine: Engine, config: SimTuneConfig, rng: np.random.Generator
) -> tuple[list[Request], list[Any], list[np.ndarray]]:
    """Fresh requests after the logged days, with point-in-time histories from the log."""
    requests = world.sample_requests(
        config.heldout, start=config.days, end=config.days + config.heldout_days, rng=rng
    )
    histories = HistoryIndex(event_frame(session_or_engine=engine), max_events=200)
    scoring, candidates = [], []
    for request in requests:
        when = to_datetime(request.t)
        history = histories.before(request.user_id, when.timestamp())
        scoring.append(request_context(request).score_request(when=when, history=history))
        candidates.append(world.available(request.t))
    return requests, scoring, candidates


def tune_on_simulator(config: SimTuneConfig | None = None) -> TuneResult:
    """Pick α by the true held-out value of each α's greedy slates in the simulated world."""
    config = config or SimTuneConfig()
    rng = np.random.default_rng(config.seed)
    world = World(config.world)
    catalog = catalog_from_world(world)
    with tempfile.TemporaryDirectory(prefix="loopbreak-tune-") as folder:
        engine = make_engine(f"sqlite:///{Path(folder) / 'log.db'}")
        try:
            init_db(engine)
            search_plays = _log_world(world, engine, config, rng)
            window = read_window(engine)
            requests, scoring, candidates = _heldout_requests(world, engine, config, rng)
        finally:
            engine.dispose()
    k = config.k
    uniform = np.mean(
        [
            world.policy_value(r, c, np.full((k, c.size), 1.0 / c.size))
            for r, c in zip(requests, candidates, strict=True)
        ]
    )
    oracle = np.mean([world.expected_reward(r, world.oracle_slate(r, k)) for r in requests])
    curve = []
    for alpha in tqdm(config.alphas, desc="alphas", leave=False, disable=None):
        scorer, report = _fit(window, catalog, config.table, alpha)
        scores = scorer.score(scoring, candidates)
        value = np.mean(
            [
                world.expected_reward(r, c[np.lexsort((c, -s))[:k]])
                for r, c, s in zip(requests, candidates, scores, strict=True)
            ]
        )
        curve.append(
            CurvePoint(
                alpha=float(alpha),
                quality=float(value),
                lo=None,
                hi=None,
                search_rows=report.search_rows,
                training_rows=report.slate_rows + report.search_rows + report.direct_rows,
                ess_share=report.ess_share,
            )
        )
        logger.info("alpha %g: true greedy value %.4f", alpha, value)
    return TuneResult(
        alpha=_best(curve),
        curve=curve,
        mode="simulator",
        quality="true expected reward per request of the greedy top-K slate (world's truth)",
        references={"uniform": float(uniform), "oracle": float(oracle)},
        details={
            "decisions": config.decisions,
            "heldout": config.heldout,
            "search_plays": search_plays,
            "logging_epsilon": config.epsilon,
            "k": k,
            "world": asdict(config.world),
        },
    )


# ---- on real logs -----------------------------------------------------------------------------


def _before(window: LoggedWindow, cut: datetime) -> LoggedWindow:
    """The decisions (and events) strictly before ``cut``."""
    keep = (window.decisions["created_at"] < cut).to_numpy()
    decisions = window.decisions[keep].reset_index(drop=True)
    slates = window.slates[window.slates["decision_id"].isin(decisions["decision_id"])]
    events = window.events[window.events["created_at"] < cut]
    return LoggedWindow(
        decisions=decisions,
        slates=slates.reset_index(drop=True),
        events=events.reset_index(drop=True),
        requests=[r for r, k in zip(window.requests, keep, strict=True) if k],
    )


def tune_on_logs(
    engine: Engine,
    catalog: ItemCatalog,
    *,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    holdout_share: float = LogTuneConfig.holdout_share,
    epsilon: float = LogTuneConfig.epsilon,
    pool: int | None = LogTuneConfig.pool,
    table: TrainingTableConfig | None = None,
) -> TuneResult:
    """Pick α by the IPS value, on the latest held-out logged decisions, of each α's ε-greedy
    policy."""
    check_alphas(alphas)
    if not 0.0 < holdout_share < 1.0:
        raise ValueError(f"holdout_share must be in (0, 1); got {holdout_share}")
    window = read_window(engine)
    if window.decisions.empty:
        raise ValueError("the log holds no decisions to tune on")
    times = window.decisions["created_at"]
    cut = pd.Timestamp(times.quantile(1.0 - holdout_share)).to_pydatetime()
    train, heldout = _before(window, cut), window.since(cut)
    if train.decisions.empty or heldout.decisions.empty:
        raise ValueError(
            f"the cut at {cut.isoformat()} leaves {len(train.decisions)} training and "
            f"{len(heldout.decisions)} held-out decisions; both must be non-empty"
        )
    policy = EpsilonGreedySlate(epsilon=epsilon, pool=pool)
    table = table or TrainingTableConfig()
    curve = []
    for alpha in tqdm(alphas, desc="alphas", leave=False, disable=None):
        scorer, report = _fit(train, catalog, table, alpha)
        ips = estimate_all(replay_batch(heldout, scorer=scorer, policy=policy))["ipw"]
        curve.append(
            CurvePoint(
                alpha=float(alpha),
                quality=ips.value,
                lo=ips.lo,
                hi=ips.hi,
                search_rows=report.search_rows,
                training_rows=report.slate_rows + report.search_rows + report.direct_rows,
                ess_share=report.ess_share,
            )
        )
    return TuneResult(
        alpha=_best(curve),
        curve=curve,
        mode="logs",
        quality=f"IPS value per decision of the ε-greedy policy (ε={epsilon:g}) on held-out logs",
        references={},
        details={
            "train_decisions": len(train.decisions),
            "heldout_decisions": len(heldout.decisions),
            "cut": cut.isoformat(),
        },
    )


# ---- either -----------------------------------------------------------------------------------


def tune_search_weight(config: SimTuneConfig | LogTuneConfig) -> TuneResult:
    """α on the simulator (``SimTuneConfig``) or on the real log (``LogTuneConfig``)."""
    if isinstance(config, SimTuneConfig):
        return tune_on_simulator(config)
    from fm_core.model_file import load_scorer_file

    catalog = load_scorer_file(config.catalog_from).catalog
    engine = make_engine(config.database)
    try:
        return tune_on_logs(
            engine,
            catalog,
            alphas=config.alphas,
            holdout_share=config.holdout_share,
            epsilon=config.epsilon,
            pool=config.pool,
        )
    finally:
        engine.dispose()
