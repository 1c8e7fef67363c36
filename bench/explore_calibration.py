"""Calibrated exploration against the simulator's ground truth, for ``loopbreak bench explore``.

For each request of the simulated world, the scores are the world's own P(play | examined) for
every available item (a perfectly calibrated scorer), and each calibrated policy picks its
exploration within the budget on those scores. The world knows the expected reward r(x, i) of
every item when examined, so the true cost of exploration is measured against the greedy slate:

- ``true_cost_exact``: Σ_x (V(greedy) − V(π)) / Σ_x V(greedy) with V(π) = Σ_k θ_k Σ_i
  P(i at k) r(x, i), for the policies with exact marginals;
- ``true_cost_sampled``: the same with V(π) averaged over ``draws`` sampled slates per request
  (seeded by decision ids), for every policy;
- ``planned_cost``: the mean cost the policy planned on the scores (exact, or its bound).

The true reward includes what the scores leave out (session intents, search), so the realized
cost can differ from the budget; that difference is what this section reports.
"""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np

from explore import (
    CalibratedSlate,
    EpsilonGreedySlate,
    ExplorationBudget,
    PlackettLuceSlate,
    TopKRandomInsertion,
    rng_for_decision,
)
from sim import World, WorldConfig


def calibrated_policies(budget: ExplorationBudget, pool: int) -> dict[str, CalibratedSlate]:
    return {
        "calibrated_epsilon_greedy": CalibratedSlate(
            base=EpsilonGreedySlate(pool=pool), budget=budget
        ),
        "calibrated_random_insertion": CalibratedSlate(
            base=TopKRandomInsertion(pool=pool), budget=budget
        ),
        "calibrated_plackett_luce": CalibratedSlate(
            base=PlackettLuceSlate(pool=pool), budget=budget
        ),
    }


def _parameter(exploration: dict[str, Any]) -> tuple[str, float]:
    if exploration["policy"] == "greedy":
        return "greedy", 0.0
    if "temperature" in exploration:
        return "temperature", float(exploration["temperature"])
    return "epsilon", float(exploration["epsilon"])


def calibration_report(
    *,
    budgets: tuple[float, ...],
    floor: float,
    k: int,
    pool: int,
    requests: int,
    draws: int,
    n_items: int,
    seed: int,
) -> list[dict[str, Any]]:
    """One row per (budget, calibrated policy)."""
    world = World(WorldConfig(seed=seed, n_items=n_items))
    rng = np.random.default_rng(seed)
    sampled = world.sample_requests(requests, start=0.0, end=7.0, rng=rng)
    theta = world.examination(k)
    rows = []
    for budget_value in budgets:
        budget = ExplorationBudget(
            relative_cost=budget_value, floor=floor, examination=world.config.examination
        )
        for name, policy in calibrated_policies(budget, pool).items():
            greedy_total = exact_loss = sampled_loss = planned = 0.0
            exact_available = True
            parameters: list[float] = []
            pools: list[int] = []
            parameter_name = ""
            n_greedy = 0
            for j, request in enumerate(sampled):
                items = world.available(request.t)
                scores = world.play_probability(request, items)
                truth = world.item_rewards(request, items)
                chosen = policy.calibrate(scores, k)
                exploration = chosen.exploration(budget)
                kind, value = _parameter(exploration)
                if kind == "greedy":
                    n_greedy += 1
                else:
                    parameter_name = kind
                    parameters.append(value)
                    pools.append(int(exploration["pool"]))
                planned += chosen.relative_cost
                kk = min(k, items.size)
                greedy_value = float(theta[:kk] @ truth[np.argsort(-scores, kind="stable")[:kk]])
                greedy_total += greedy_value
                try:
                    marginals = chosen.policy.marginals(scores, k)
                    exact_loss += greedy_value - float(theta[:kk] @ marginals @ truth)
                except ValueError:
                    exact_available = False
                values = []
                for d in range(draws):
                    decision_id = uuid.UUID(int=(seed << 64) + j * draws + d + 1)
                    slate = chosen.policy.decide(scores, k, rng_for_decision(decision_id))
                    values.append(float(theta[: len(slate)] @ truth[slate.indices]))
                sampled_loss += greedy_value - float(np.mean(values))
            rows.append(
                {
                    "policy": name,
                    "budget": budget_value,
                    "floor": floor,
                    "planned_cost": planned / len(sampled),
                    "cost_exact": name != "calibrated_plackett_luce",
                    "true_cost_exact": exact_loss / greedy_total if exact_available else None,
                    "true_cost_sampled": sampled_loss / greedy_total,
                    "parameter": parameter_name or "none",
                    "mean_parameter": float(np.mean(parameters)) if parameters else 0.0,
                    "mean_pool": float(np.mean(pools)) if pools else 0.0,
                    "greedy_share": n_greedy / len(sampled),
                }
            )
    return rows
