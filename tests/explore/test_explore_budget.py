"""Calibrated exploration: the chosen exploration stays within the budget (exactly, or under an
exact bound for Plackett-Luce, itself checked against exact marginals), meets the propensity
floor, grows with the budget, falls back to greedy when nothing fits, is logged on the slate,
and bad budgets or scores are refused naming the field."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from explore import (
    CalibratedSlate,
    EpsilonGreedySlate,
    ExplorationBudget,
    GreedySlate,
    PlackettLuceSlate,
    Policy,
    TopKRandomInsertion,
    calibrate,
    expected_plays,
    greedy_order,
)
from explore.budget import plackett_luce_cost_bound
from explore.pl_bound import LOG_T_TOLERANCE, cost_bound, largest_log_temperature
from explore.plackett_luce import pool_log_weights

RNG = np.random.default_rng(17)
SCORE_SETS = [RNG.beta(1.0, 6.0, size=n) for n in (40, 200, 1000)]
EXACT_FAMILIES = {
    "epsilon_greedy": EpsilonGreedySlate(pool=100),
    "epsilon_greedy_positions": EpsilonGreedySlate(pool=60, positions=tuple(range(3, 20))),
    "random_insertion": TopKRandomInsertion(pool=100),
    "random_insertion_positions": TopKRandomInsertion(positions=(2, 5, 9)),
}


def relative_cost(policy: Policy, scores: np.ndarray, k: int, budget: ExplorationBudget) -> float:
    theta = budget.weights(min(k, scores.size))
    greedy = expected_plays(GreedySlate().marginals(scores, k), scores, theta)
    return (greedy - expected_plays(policy.marginals(scores, k), scores, theta)) / greedy


def smallest_positive_marginal(policy: Policy, scores: np.ndarray, k: int) -> float:
    marginals = policy.marginals(scores, k)
    return float(marginals[marginals > 0].min())


@pytest.mark.parametrize("floor", [0.0, 1e-3])
@pytest.mark.parametrize("budget_value", [0.001, 0.005, 0.05])
@pytest.mark.parametrize("scores", SCORE_SETS, ids=["n40", "n200", "n1000"])
@pytest.mark.parametrize("family", list(EXACT_FAMILIES))
def test_exact_families_spend_at_most_the_budget_and_respect_the_floor(
    family: str, scores: np.ndarray, budget_value: float, floor: float
) -> None:
    budget = ExplorationBudget(relative_cost=budget_value, floor=floor)
    chosen = calibrate(EXACT_FAMILIES[family], scores, 20, budget)
    assert chosen.cost_exact
    cost = relative_cost(chosen.policy, scores, 20, budget)
    assert cost == pytest.approx(chosen.relative_cost, abs=1e-12)
    assert cost <= budget_value + 1e-12
    if isinstance(chosen.policy, GreedySlate):
        return
    assert smallest_positive_marginal(chosen.policy, scores, 20) >= floor - 1e-15
    assert chosen.policy.pool <= (EXACT_FAMILIES[family].pool or scores.size)
    if chosen.policy.epsilon < 1.0 and floor == 0.0:
        assert cost == pytest.approx(budget_value, rel=1e-9)  # the budget binds


@pytest.mark.parametrize("family", list(EXACT_FAMILIES))
def test_more_budget_buys_more_exploration(family: str) -> None:
    scores = SCORE_SETS[1]
    epsilons = [
        calibrate(
            EXACT_FAMILIES[family], scores, 20, ExplorationBudget(relative_cost=b)
        ).policy.params()["epsilon"]
        for b in (0.001, 0.005, 0.02, 0.1)
    ]
    assert all(a < b or b == 1.0 for a, b in itertools.pairwise(epsilons))


@pytest.mark.parametrize("family", list(EXACT_FAMILIES))
def test_without_a_floor_the_deepest_pool_is_found_as_by_the_search_over_every_pool(
    family: str,
) -> None:
    # A floor of 1e-300 refuses no positive ε, but takes the search over every pool: both must
    # give the same policy and cost, bit for bit.
    base = EXACT_FAMILIES[family]
    for scores, budget_value, k in itertools.product(SCORE_SETS, (0.001, 0.05, 1.0), (1, 5, 20)):
        found = calibrate(base, scores, k, ExplorationBudget(relative_cost=budget_value))
        searched = calibrate(
            base, scores, k, ExplorationBudget(relative_cost=budget_value, floor=1e-300)
        )
        assert found.policy == searched.policy
        assert found.relative_cost == searched.relative_cost
        assert isinstance(found.policy, GreedySlate) or type(found.policy.epsilon) is float


@pytest.mark.parametrize("mix", [0.0, 0.2])
@pytest.mark.parametrize("temperature", [0.005, 0.05, 0.3, 3.0])
def test_plackett_luce_cost_bound_is_an_upper_bound_on_the_exact_cost(
    temperature: float, mix: float
) -> None:
    rng = np.random.default_rng(int(temperature * 1000) + int(mix * 10))
    for _ in range(5):
        scores = rng.beta(1.0, 4.0, size=10)
        policy = PlackettLuceSlate(temperature=temperature, uniform_mix=mix)
        budget = ExplorationBudget()
        theta = budget.weights(4)
        exact = relative_cost(policy, scores, 4, budget) * (
            theta @ np.sort(scores)[::-1][:4]
        )  # in plays
        p = scores[greedy_order(scores)]
        bound = plackett_luce_cost_bound(p, pool_log_weights(p, temperature), theta, mix)
        assert exact <= bound + 1e-12
        assert exact > 0.0


@pytest.mark.parametrize("pool", [20, 21, 100, 1000])
def test_the_compiled_bound_equals_the_log_sum_exp_bound_from_cold_to_hot(pool: int) -> None:
    p = np.sort(SCORE_SETS[2])[::-1][:pool]
    p[-3:] = 0.0  # candidates with no chance of a play
    theta = ExplorationBudget().weights(20)
    log_ts = np.linspace(-14.0, 2.0, 33)  # head weights spanning e^(10^5) down to nearly flat
    for mix in (0.0, 0.1):
        compiled = [cost_bound(p, theta, mix, float(t)) for t in log_ts]
        reference = [
            plackett_luce_cost_bound(p, pool_log_weights(p, float(np.exp(t))), theta, mix)
            for t in log_ts
        ]
        np.testing.assert_allclose(compiled, reference, rtol=1e-9, atol=1e-11)
        assert np.all(np.diff(compiled) >= -1e-12)  # grows with T
        assert min(compiled) >= 0.0


def test_the_temperature_search_finds_the_warmest_fit_to_its_tolerance() -> None:
    rng = np.random.default_rng(5)
    searched = 0
    for trial in range(60):
        scores = rng.beta(1.0, rng.uniform(1.0, 20.0), size=int(rng.integers(20, 400)))
        if trial % 4 == 0:
            scores = np.round(scores, 2)  # ties, and runs of equal scores
        p = np.sort(scores)[::-1]
        theta = ExplorationBudget().weights(20)
        mix = float(rng.choice([0.0, 0.05]))
        lo, hi = np.log(1e-4 * (p[0] - p[-1])), np.log(1e2 * (p[0] - p[-1]))
        allowed = float(rng.choice([1e-3, 5e-3, 0.05])) * float(theta @ p[:20])
        log_t, spent = largest_log_temperature(p, theta, mix, lo, hi, allowed)
        if np.isnan(log_t):  # even the coldest temperature breaks the budget
            assert cost_bound(p, theta, mix, lo) > allowed
            continue
        searched += 1
        assert lo <= log_t <= hi
        assert spent == cost_bound(p, theta, mix, log_t) <= allowed
        if log_t < hi:  # warmer by the tolerance no longer fits
            assert cost_bound(p, theta, mix, min(log_t + LOG_T_TOLERANCE, hi)) > allowed
    assert searched >= 30


@pytest.mark.parametrize("floor", [0.0, 0.02])
@pytest.mark.parametrize("budget_value", [0.01, 0.05, 0.2])
def test_calibrated_plackett_luce_stays_within_budget_by_its_exact_marginals(
    budget_value: float, floor: float
) -> None:
    rng = np.random.default_rng(4)
    budget = ExplorationBudget(relative_cost=budget_value, floor=floor)
    for _ in range(4):
        scores = rng.beta(1.0, 4.0, size=12)  # a pool of 12: exact marginals
        chosen = calibrate(PlackettLuceSlate(), scores, 4, budget)
        if isinstance(chosen.policy, GreedySlate):  # the floor's mix alone breaks the budget
            assert floor > 0.0
            continue
        cost = relative_cost(chosen.policy, scores, 4, budget)
        assert cost <= chosen.relative_cost + 1e-12 <= budget_value + 1e-12
        assert cost > 0.0
        slate = chosen.policy.decide(scores, 4, rng)
        assert np.all(slate.cond_propensity >= floor - 1e-15)


def test_plackett_luce_calibration_narrows_the_pool_for_the_floor() -> None:
    scores = SCORE_SETS[2]
    budget = ExplorationBudget(relative_cost=0.005, floor=1e-4)
    chosen = calibrate(PlackettLuceSlate(), scores, 20, budget)
    params = chosen.policy.params()
    assert 20 <= params["pool"] < 1000
    assert params["uniform_mix"] == pytest.approx(1e-4 * params["pool"])
    assert chosen.relative_cost <= 0.005


def test_nothing_fits_falls_back_to_greedy() -> None:
    scores = SCORE_SETS[0]
    no_budget = ExplorationBudget(relative_cost=0.0)
    too_high_a_floor = ExplorationBudget(relative_cost=0.01, floor=0.5)
    for base in (EpsilonGreedySlate(), TopKRandomInsertion(), PlackettLuceSlate()):
        assert isinstance(calibrate(base, scores, 10, too_high_a_floor).policy, GreedySlate)
        assert calibrate(base, scores, 10, no_budget).relative_cost == 0.0
    for base in (EpsilonGreedySlate(), TopKRandomInsertion()):
        assert isinstance(calibrate(base, scores, 10, no_budget).policy, GreedySlate)


def test_equal_scores_cost_nothing_to_explore() -> None:
    scores = np.full(50, 0.2)
    for base in (EpsilonGreedySlate(), TopKRandomInsertion(), PlackettLuceSlate()):
        chosen = calibrate(base, scores, 5, ExplorationBudget(relative_cost=0.001))
        assert chosen.relative_cost == pytest.approx(0.0, abs=1e-12)
        assert chosen.policy.params().get("epsilon", 1.0) == 1.0


def test_the_slate_carries_the_exploration_actually_used() -> None:
    scores = SCORE_SETS[1]
    budget = ExplorationBudget(relative_cost=0.01, floor=1e-3)
    policy = CalibratedSlate(base=TopKRandomInsertion(pool=80), budget=budget)
    assert policy.name == "calibrated_random_insertion"
    slate = policy.decide(scores, 20, np.random.default_rng(0))
    used = slate.exploration
    assert used is not None
    assert used["policy"] == "random_insertion" and used["budget"] == 0.01
    assert used["floor"] == 1e-3 and used["cost_exact"] is True
    assert 0.0 < used["epsilon"] <= 1.0 and used["expected_cost"] <= 0.01
    chosen = policy.calibrate(scores, 20)
    assert used == chosen.exploration(budget)
    assert slate.probability == pytest.approx(policy.slate_probability(scores, slate.indices))
    np.testing.assert_array_equal(policy.marginals(scores, 20), chosen.policy.marginals(scores, 20))


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"relative_cost": -0.1}, r"relative_cost must be finite and >= 0; got -0\.1"),
        ({"relative_cost": float("nan")}, r"relative_cost must be finite and >= 0"),
        ({"floor": 1.0}, r"floor must be in \[0, 1\); got 1\.0"),
        ({"examination": "linear"}, r"examination must be 'log', 'inverse' or a tuple"),
        ({"examination": (1.0, 0.5, 0.7)}, r"examination weights must be nonincreasing"),
        ({"examination": (1.0, -0.5)}, r"examination weights must be a non-empty tuple"),
    ],
)
def test_bad_budgets_raise_naming_the_field(params: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ExplorationBudget(**params)


def test_explicit_examination_weights_must_cover_the_slate() -> None:
    budget = ExplorationBudget(examination=(1.0, 0.6, 0.5))
    np.testing.assert_array_equal(budget.weights(2), [1.0, 0.6])
    with pytest.raises(ValueError, match=r"examination has 3 weights; a slate of 5 needs 5"):
        calibrate(EpsilonGreedySlate(), SCORE_SETS[0], 5, budget)


@pytest.mark.parametrize("bad", [-0.1, 1.2])
def test_scores_that_are_not_probabilities_are_refused(bad: float) -> None:
    scores = np.array([0.2, bad, 0.4])
    with pytest.raises(ValueError, match=r"scores must be calibrated P\(play\) in \[0, 1\]"):
        CalibratedSlate(base=EpsilonGreedySlate()).decide(scores, 2, np.random.default_rng(0))


def test_an_unknown_family_is_refused() -> None:
    with pytest.raises(TypeError, match=r"base must be an EpsilonGreedySlate"):
        calibrate(object(), SCORE_SETS[0], 3, ExplorationBudget())  # type: ignore[arg-type]


def test_calibrated_policies_log_their_family_calibration_version() -> None:
    assert CalibratedSlate(base=PlackettLuceSlate()).version == "3"  # the root search's v3
    assert CalibratedSlate(base=EpsilonGreedySlate()).version == "1"
    assert CalibratedSlate(base=TopKRandomInsertion()).version == "1"
    assert CalibratedSlate(base=PlackettLuceSlate(), version="7").version == "7"
