"""Running the loop study: each (seed, arm) is one closed loop on its own simulated world and its
own in-memory SQLite log, through the same decision service, log windows, training table and
retraining that users run; ``run_study`` runs them all over worker processes.

Common random numbers: a seed's requests come from a generator keyed by (seed, round), each
request's response randomness and decision id from one keyed by (seed, round, request). So every
arm of a seed meets the same members with the same requests, and two arms that show the same
slate to a member get the same response: the arms' differences are paired.

Per request the world's ground truth gives r(x, i) for every available title. The served
policy's true value is θ·M·r with M its exact marginals (the sampled slate's θ·r where a
family has none), the oracle's is the top K of r, and the model's own greedy slate gives the
realized cost of exploration, 1 − V(served) / V(greedy), both on the same scores.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import Engine
from sqlmodel import Session

from explore.policy import greedy_order
from fm_core import PopularityAffinityScorer, Scorer
from loop.ope_eval import EvaluationSettings, evaluate, gate_evaluation
from loop.ope_targets import TargetPolicy
from loop.retrain import fit_model
from loop.service import DecisionService
from loop.sim_bridge import catalog_from_world, decision_input, events_from_outcome
from loop.study.arms import Arm, make_arm
from loop.study.config import GATE_MARGINS, StudyConfig
from loop.study.metrics import gini, mean_pairwise_jaccard
from loop.windows import read_window, training_impressions
from ope.gate import GateThresholds
from proplog.engine import init_db, make_engine
from proplog.store import record_events
from sim import Request, World
from sim.clock import to_datetime

logger = logging.getLogger(__name__)

_REQUESTS, _RESPONSE, _DECISION = 0, 1, 2  # the streams of the common random numbers


@dataclass
class _RoundTally:
    """What one round of one arm adds up, request by request."""

    n_items: int
    decisions: int = 0
    served: float = 0.0
    oracle: float = 0.0
    greedy: float = 0.0
    impressions: int = 0
    popularity: float = 0.0
    new_impressions: int = 0
    new_plays: int = 0
    plays: dict[str, int] = field(default_factory=lambda: {"rec": 0, "search": 0})
    exposure: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.exposure = np.zeros(self.n_items)


@dataclass(frozen=True)
class ArmRun:
    """One arm on one seed: its per-round measures and its whole-run (cumulative) ones."""

    seed: int
    arm: str
    rounds: list[dict[str, Any]]
    cumulative: dict[str, float]


class _ArmLoop:
    """The state of one arm on one seed's world while it runs."""

    def __init__(self, config: StudyConfig, seed: int, arm: Arm) -> None:
        self.config, self.seed, self.arm = config, seed, arm
        self.world = World(config.world_for(seed))
        self.catalog = catalog_from_world(self.world)
        log_prior = np.log(self.world.catalog.popularity)
        self.popularity_z = (log_prior - log_prior.mean()) / log_prior.std()
        self.released_in_run = self.world.catalog.release_day > 0.0
        n_items, n_users = self.world.catalog.n_items, self.world.users.n_users
        self.consumed = np.zeros((n_users, n_items), dtype=bool)
        self.run_exposure = np.zeros(n_items)
        self.theta = self.world.examination(config.k)
        self.true_rewards: dict[str, np.ndarray] = {}  # r(x, candidate) as served
        self.served_values: dict[str, float] = {}
        self.engine: Engine | None = None
        self.scorer: Scorer = PopularityAffinityScorer(self.catalog, model_version="untrained")
        if not arm.is_oracle:
            self.engine = make_engine("sqlite://")
            init_db(self.engine)

    # ---- retraining and the off-policy estimate made before serving ------------------------

    def retrain(self, r: int) -> dict[str, Any] | None:
        """Fit the arm's model on its own logs before the held-out tail of round r − 1, and
        estimate the new policy's value on that tail (the estimate made before it serves)."""
        assert self.engine is not None and self.arm.policy is not None
        days = self.config.days_per_round
        cut = to_datetime((r - self.config.holdout_share) * days)
        window = read_window(self.engine, until=cut)
        data = training_impressions(window, self.arm.table)
        if not np.any(data.labels > 0):
            logger.info("%s seed %d round %d: no plays to learn from", self.arm.name, self.seed, r)
            return None
        self.scorer = fit_model(
            data, self.catalog, model="baseline", version=f"{self.arm.name}-r{r}"
        ).scorer
        held_out = read_window(self.engine, since=cut, until=to_datetime(r * days))
        if held_out.decisions.empty:
            return None
        if held_out.slates["propensity"].isna().any():
            reason = "the logged marginals are not exact (DESIGN §3): no estimator takes them"
            return {"unsupported": None, "estimates": {}, "skipped": reason}
        policy = self.arm.policy
        target = TargetPolicy(name=self.scorer.model_version, scorer=self.scorer, policy=policy)
        try:
            evaluation = evaluate(
                held_out, target, settings=EvaluationSettings(seed=self.seed), history=window
            )
        except ValueError as exc:  # e.g. random insertion: its prefixes depend on the length
            return {"unsupported": None, "estimates": {}, "skipped": str(exc)}
        return self._ope_record(held_out.decisions, evaluation)

    def _ope_record(self, decisions: Any, evaluation: Any) -> dict[str, Any]:
        """The evaluation made before the round, beside the truth on the same window: the
        candidate's true value on the held-out decisions (θ · M · r with its exact marginals
        and the rewards as served) and production's (the served policy's)."""
        candidate, primary, lift = (
            evaluation.candidate,
            evaluation.candidate.primary,
            evaluation.lift,
        )
        truth = production = 0.0
        for decision_id, m in zip(
            decisions["decision_id"], candidate.replayed.marginals, strict=True
        ):
            truth += float(self.theta[: m.shape[0]] @ m @ self.true_rewards[decision_id])
            production += self.served_values[decision_id]
        n = len(decisions)
        estimates = {
            name: {"value": e.value, "lo": e.lo, "hi": e.hi}
            for name, e in candidate.estimates.items()
        }
        estimates["primary"] = {"value": primary.value, "lo": primary.lo, "hi": primary.hi}
        return {
            "unsupported": candidate.replayed.unsupported_mass,
            "truth": truth / n,
            "production_truth": production / n,
            "estimates": estimates,
            "primary": {
                "estimator": primary.estimator,
                "reliable": primary.reliable,
                "reasons": primary.reasons,
                "path": [[r.tau, r.value, r.lo, r.hi] for r in primary.path],
                "unsupported_down": primary.diagnostics["unsupported_down"],
                "unsupported_up": primary.diagnostics["unsupported_up"],
            },
            "lift": {
                "value": lift.value,
                "lo": lift.lo,
                "hi": lift.hi,
                "estimator": lift.estimator,
                "reliable": lift.reliable,
            },
            "gate": {
                str(margin): gate_evaluation(evaluation, GateThresholds(margin=margin)).ready
                for margin in GATE_MARGINS
            },
        }

    # ---- serving ---------------------------------------------------------------------------

    def requests(self, r: int) -> list[Request]:
        days = self.config.days_per_round
        rng = np.random.default_rng([self.seed, r, _REQUESTS])
        return self.world.sample_requests(
            self.config.decisions, start=r * days, end=(r + 1) * days, rng=rng
        )

    def serve_round(self, r: int, session: Session | None) -> _RoundTally:
        tally = _RoundTally(n_items=self.world.catalog.n_items)
        service = (
            None
            if self.arm.policy is None
            else DecisionService(scorer=self.scorer, policy=self.arm.policy)
        )
        for i, request in enumerate(self.requests(r)):
            self._serve_one(r, i, request, service, session, tally)
        return tally

    def _serve_one(
        self,
        r: int,
        i: int,
        request: Request,
        service: DecisionService | None,
        session: Session | None,
        tally: _RoundTally,
    ) -> None:
        k, world = self.config.k, self.world
        items = world.available(request.t)
        rewards = world.item_rewards(request, items)
        best = np.lexsort((items, -rewards))[:k]  # world.oracle_slate's order
        oracle, oracle_value = items[best], float(self.theta[: best.size] @ rewards[best])
        decision_id = str(
            uuid.UUID(bytes=np.random.default_rng([self.seed, r, i, _DECISION]).bytes(16))
        )
        if service is None or session is None:
            slate, value, greedy_value = oracle, oracle_value, oracle_value
        else:
            out = service.decide(
                session=session,
                request=decision_input(request, k=k, decision_id=decision_id),
                now=to_datetime(request.t),
            )
            record = out.record
            candidates = np.asarray(record.candidate_ids, dtype=np.int64)
            scores = np.asarray(record.candidate_scores, dtype=np.float64)
            r_c = rewards[np.searchsorted(items, candidates)]
            slate = np.array([s.item_id for s in record.slate], dtype=np.int64)
            theta = self.theta[: slate.size]
            greedy_value = float(theta @ r_c[greedy_order(scores)[: slate.size]])
            if record.marginals_exact:
                value = float(theta @ service.policy.marginals(scores, slate.size) @ r_c)
            else:
                value = float(theta @ rewards[np.searchsorted(items, slate)])
            self.true_rewards[decision_id] = r_c
            self.served_values[decision_id] = value
        outcome = world.respond(request, slate, np.random.default_rng([self.seed, r, i, _RESPONSE]))
        if session is not None:
            events = events_from_outcome(outcome, decision_id=decision_id)
            if events:
                record_events(session=session, events=events)
        world.record(outcome)
        tally.decisions += 1
        tally.served += value
        tally.oracle += oracle_value
        tally.greedy += greedy_value
        tally.impressions += slate.size
        tally.exposure[slate] += 1.0
        tally.popularity += float(self.popularity_z[slate].sum())
        tally.new_impressions += int(self.released_in_run[slate].sum())
        for play in outcome.plays:
            tally.plays[play.source] += 1
            tally.new_plays += int(self.released_in_run[play.item])
            self.consumed[request.user, play.item] = True

    # ---- one round's and the whole run's measures -------------------------------------------

    def measures(self, r: int, tally: _RoundTally) -> dict[str, float]:
        available = self.world.available((r + 1) * self.config.days_per_round)
        n = max(tally.decisions, 1)
        return {
            "true_reward": tally.served / n,
            "oracle_reward": tally.oracle / n,
            "regret": (tally.oracle - tally.served) / n,
            "coverage": float(np.count_nonzero(tally.exposure[available]) / available.size),
            "exposure_gini": gini(tally.exposure[available]),
            "jaccard": mean_pairwise_jaccard(self.consumed),
            "popularity_lean": tally.popularity / max(tally.impressions, 1),
            "new_title_exposure": tally.new_impressions / max(tally.impressions, 1),
            "new_title_plays": tally.new_plays / n,
            "exploration_cost": _relative_cost(tally.greedy, tally.served),
            "plays_rec": tally.plays["rec"] / n,
            "plays_search": tally.plays["search"] / n,
        }

    def run(self) -> ArmRun:
        rounds: list[dict[str, Any]] = []
        served = greedy = regret = total = 0.0
        impressions = new_impressions = 0
        for r in range(self.config.rounds):
            ope = self.retrain(r) if r > 0 and not self.arm.is_oracle else None
            if self.engine is None:
                tally = self.serve_round(r, None)
            else:
                with Session(self.engine) as session:
                    tally = self.serve_round(r, session)
            rounds.append({"round": r, **self.measures(r, tally), "ope": ope})
            self.run_exposure += tally.exposure
            if r > 0:  # the warm-up's untrained scores are flat: its greedy slate is arbitrary
                served, greedy = served + tally.served, greedy + tally.greedy
            regret += tally.oracle - tally.served
            total += tally.served
            impressions += tally.impressions
            new_impressions += tally.new_impressions
        available = self.world.available(self.config.rounds * self.config.days_per_round)
        if self.engine is not None:
            self.engine.dispose()
        cumulative = {
            "regret": regret,
            "true_reward": total / (self.config.rounds * self.config.decisions),
            "coverage": float(np.count_nonzero(self.run_exposure[available]) / available.size),
            "exposure_gini": gini(self.run_exposure[available]),
            "jaccard": rounds[-1]["jaccard"],
            "popularity_lean": float(
                self.run_exposure @ self.popularity_z / max(self.run_exposure.sum(), 1.0)
            ),
            "new_title_exposure": new_impressions / max(impressions, 1),
            "exploration_cost": _relative_cost(greedy, served),
        }
        return ArmRun(seed=self.seed, arm=self.arm.name, rounds=rounds, cumulative=cumulative)


def _relative_cost(greedy: float, served: float) -> float:
    return 1.0 - served / greedy if greedy > 0 else math.nan


def run_arm(config: StudyConfig, seed: int, arm: str) -> ArmRun:
    """One arm on one seed's world, from the untrained model to the last round."""
    return _ArmLoop(config, seed, make_arm(arm, config)).run()


def _tasks(config: StudyConfig) -> Iterator[tuple[int, str]]:
    for seed in config.seed_list:
        for arm in config.arms_run:
            yield seed, arm


def run_study(
    config: StudyConfig, *, on_done: Callable[[ArmRun], None] | None = None
) -> list[ArmRun]:
    """Every arm on every seed, over ``config.workers`` processes (in this one for 1); the runs
    come back in (seed, arm) order whatever order they finish in."""
    tasks = list(_tasks(config))
    runs: dict[tuple[int, str], ArmRun] = {}
    if config.workers == 1:
        for seed, arm in tasks:
            runs[seed, arm] = run_arm(config, seed, arm)
            if on_done is not None:
                on_done(runs[seed, arm])
    else:
        with ProcessPoolExecutor(max_workers=config.workers) as pool:
            futures = {pool.submit(run_arm, config, seed, arm): (seed, arm) for seed, arm in tasks}
            for future in as_completed(futures):
                runs[futures[future]] = future.result()
                if on_done is not None:
                    on_done(runs[futures[future]])
    return [runs[task] for task in tasks]
