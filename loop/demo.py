"""The main job on the embedded default: the loop turning on the simulated world and SQLite.

Round 0 serves a uniform policy to collect warm-up logs. Every later round:

1. retrains the scorer (``DemoConfig.model``: the baseline, or the foundation model with its
   ranker) on the logs so far (point-in-time histories), except the last ``holdout_share`` of the
   previous round;
2. estimates, before serving, the value of the new ε-greedy policy on that held-out part of the
   previous round (``loop.ope_eval.evaluate``, the report's and the gate's code path): the
   primary estimate with its interval and verdict, beside IPS and SNIPS. The model never
   saw those decisions or their plays: evaluated on its own training logs, a model that counts
   plays would rank the very items that were played there first, and IPS would credit it
   (the baseline's estimate was 2.6× the truth that way). Beside the estimates it reports the
   share of the new policy's slate that the logging policy could never have shown
   (``unsupported``, ``ope.support``): IPS cannot see that part, and estimates low when it is
   large;
3. serves the round's requests through ``DecisionService`` (the same path as the HTTP API), so
   every decision is recorded with its exact propensities before the world responds;
4. records the world's plays, with ``source="search"`` for those found through search.

Per round it reports the true expected reward per decision of the served policy (exact, from the
world's ground truth and the policy's marginals), the primary, IPS and SNIPS estimates of that
same policy made beforehand, the oracle's reward, and catalog coverage.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Engine
from sqlmodel import Session
from tqdm import tqdm

from explore import EpsilonGreedySlate
from fm_core import PopularityAffinityScorer, Scorer
from loop.demo_config import DemoConfig
from loop.ope_eval import evaluate
from loop.ope_targets import TargetPolicy
from loop.retrain import FittedModel, fit_model
from loop.service import DecisionService
from loop.sim_bridge import (
    catalog_file_frame,
    catalog_from_world,
    decision_input,
    respond_and_log,
)
from loop.windows import LoggedWindow, read_window, training_impressions
from proplog.catalog import load_catalog_rows
from proplog.engine import init_db, make_engine
from proplog.registry import record_model_version
from sim import World
from sim.clock import to_datetime

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RoundResult:
    round: int
    policy: str
    model_version: str
    true_reward: float
    primary: float | None
    primary_lo: float | None
    primary_hi: float | None
    primary_estimator: str | None
    reliable: bool | None
    ips: float | None
    ips_lo: float | None
    ips_hi: float | None
    snips: float | None
    unsupported: float | None
    coverage: float
    oracle_reward: float
    decisions: int
    plays_rec: int
    plays_search: int


def _serve_round(
    *,
    world: World,
    service: DecisionService,
    policy: EpsilonGreedySlate,
    session: Session,
    config: DemoConfig,
    round_index: int,
    rng: np.random.Generator,
) -> dict[str, Any]:
    start = round_index * config.days_per_round
    requests = world.sample_requests(
        config.decisions_per_round, start=start, end=start + config.days_per_round, rng=rng
    )
    true_total = oracle_total = 0.0
    shown: set[int] = set()
    plays = {"rec": 0, "search": 0}
    progress = tqdm(
        requests, desc=f"round {round_index}", leave=False, unit="decision", disable=None
    )
    for request in progress:
        decision_id = str(uuid.UUID(bytes=rng.bytes(16), version=4))
        out = service.decide(
            session=session,
            request=decision_input(request, k=config.k, decision_id=decision_id),
            now=to_datetime(request.t),
        )
        record = out.record
        candidates = np.asarray(record.candidate_ids, dtype=np.int64)
        marginals = policy.marginals(np.asarray(record.candidate_scores), config.k)
        true_total += world.policy_value(request, candidates, marginals)
        oracle_total += world.expected_reward(request, world.oracle_slate(request, config.k))
        outcome = respond_and_log(world, request, record, rng, session)
        shown.update(int(i) for i in outcome.slate)
        for play in outcome.plays:
            plays[play.source] += 1
    end = start + config.days_per_round
    n = len(requests)
    return {
        "true_reward": true_total / n,
        "oracle_reward": oracle_total / n,
        "coverage": len(shown) / max(world.available(end).size, 1),
        "decisions": n,
        "plays_rec": plays["rec"],
        "plays_search": plays["search"],
    }


def run_demo(
    out_dir: str | Path,
    config: DemoConfig | None = None,
    *,
    on_round: Callable[[RoundResult], None] | None = None,
) -> list[RoundResult]:
    """Run the loop; write ``out_dir/demo.db``, ``out_dir/model.npz`` and return the rounds."""
    config = config or DemoConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    database = out / "demo.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    engine = make_engine(f"sqlite:///{database}")
    init_db(engine)

    world = World(config.world)
    catalog = catalog_from_world(world)
    with Session(engine) as session:  # the log's catalog, as `loopbreak catalog load` writes it
        load_catalog_rows(session, catalog_file_frame(world))
    rng = np.random.default_rng(config.seed)
    scorer: Scorer = PopularityAffinityScorer(catalog, model_version="untrained")
    policy = EpsilonGreedySlate(epsilon=1.0, name="uniform")
    results: list[RoundResult] = []
    fitted: FittedModel | None = None
    trained: tuple[LoggedWindow, datetime] | None = None
    for r in range(config.rounds):
        estimates = None
        primary = None
        unsupported = None
        if r > 0:
            round_start = to_datetime(r * config.days_per_round)
            cut = to_datetime((r - config.holdout_share) * config.days_per_round)
            history = read_window(engine, until=cut)
            fitted = fit_model(
                training_impressions(history),
                catalog,
                model=config.model,
                version=f"{config.model}-r{r}",
            )
            scorer = fitted.scorer
            trained = (history, cut)
            new_policy = EpsilonGreedySlate(epsilon=config.epsilon, pool=config.pool)
            held_out = read_window(engine, since=cut, until=round_start)
            target = TargetPolicy(name=scorer.model_version, scorer=scorer, policy=new_policy)
            evaluation = evaluate(held_out, target, history=history)
            estimates = evaluation.candidate.estimates
            primary = evaluation.candidate.primary
            unsupported = evaluation.candidate.support.share
            policy = new_policy
        service = DecisionService(scorer=scorer, policy=policy)
        with Session(engine) as session:
            served = _serve_round(
                world=world,
                service=service,
                policy=policy,
                session=session,
                config=config,
                round_index=r,
                rng=rng,
            )
        result = RoundResult(
            round=r,
            policy=f"{policy.name}(eps={policy.epsilon:g}, pool={policy.pool})",
            model_version=scorer.model_version,
            primary=primary.value if primary else None,
            primary_lo=primary.lo if primary else None,
            primary_hi=primary.hi if primary else None,
            primary_estimator=primary.estimator if primary else None,
            reliable=primary.reliable if primary else None,
            ips=estimates["ipw"].value if estimates else None,
            ips_lo=estimates["ipw"].lo if estimates else None,
            ips_hi=estimates["ipw"].hi if estimates else None,
            snips=estimates["snipw"].value if estimates else None,
            unsupported=unsupported,
            **served,
        )
        results.append(result)
        logger.info("round %d: %s", r, result)
        if on_round is not None:
            on_round(result)
    path = scorer.save(out / "model.npz")  # type: ignore[attr-defined]  # both kinds save
    if fitted is not None and trained is not None:
        _register(engine, fitted, path, *trained)
    engine.dispose()
    return results


def _register(
    engine: Engine, fitted: FittedModel, path: Path, history: LoggedWindow, cut: datetime
) -> None:
    """Register the last round's model, the one saved as ``model.npz``, with its training
    window, so that ``loopbreak models`` and the report and gate know it."""
    times = history.decisions["created_at"]
    window = {"first": times.min().isoformat(), "last": times.max().isoformat(),
              "cut": cut.isoformat()}  # fmt: skip
    with Session(engine) as session:
        record_model_version(
            session=session, version=fitted.scorer.model_version, kind=fitted.kind,
            params={**fitted.params, "training_window": window}, metrics=fitted.metrics,
            path=str(path.resolve()),
        )  # fmt: skip


def demo_json(results: list[RoundResult], config: DemoConfig) -> dict[str, Any]:
    """The ``demo.json`` document: the per-round table, plus the configuration that made it."""
    return {
        "rounds": [asdict(r) for r in results],
        "config": {k: v for k, v in asdict(config).items() if k != "world"}
        | {"world": asdict(config.world)},
    }
