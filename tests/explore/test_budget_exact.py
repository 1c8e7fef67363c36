"""The exploration budget on four candidates and two slots, every number by hand: ε and the pool
that ε-greedy and random insertion get under a budget and a floor, the relative cost they report
(checked again against their own marginals), the examination weights, the logged parameters,
and each refusal's whole message."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from explore import (
    EpsilonGreedySlate,
    ExplorationBudget,
    GreedySlate,
    PlackettLuceSlate,
    TopKRandomInsertion,
    calibrate,
    expected_plays,
)
from explore.budget import Calibration, plackett_luce_cost_bound, validate_probabilities

P = np.array([0.5, 0.4, 0.3, 0.1])  # calibrated P(play), already in greedy order
T1 = 1 / math.log2(3)  # θ_1; θ_0 = 1
V_GREEDY = 0.5 + 0.4 * T1


def cost_from_marginals(calibration: Calibration, k: int = 2) -> float:
    """(V(greedy) − V(π)) / V(greedy) from the calibrated policy's own marginals."""
    theta = np.array([1.0, T1])[:k]
    value = expected_plays(calibration.policy.marginals(P, k), P, theta)
    return (V_GREEDY - value) / V_GREEDY


def eg_cost(mean: float) -> float:
    """ε-greedy's cost at ε = 1 in plays, all positions exploring a pool with mean p ``mean``."""
    return (0.5 - mean) + T1 * (0.4 - mean)


@pytest.mark.parametrize(
    ("floor", "pool", "epsilon"),
    [
        (0.0, 4, 0.05 * V_GREEDY / eg_cost(0.325)),  # the deepest pool
        (0.05, 3, 0.05 * V_GREEDY / eg_cost(0.4)),  # ε/4 = 0.042 < 0.05: one narrower
        (0.2, 2, 1.0),  # pool 3 gives ε/3 = 0.125 < 0.2; pool 2 affords ε = 1, 1/2 >= 0.2
    ],
)
def test_epsilon_greedy_pool_and_epsilon(floor: float, pool: int, epsilon: float) -> None:
    budget = ExplorationBudget(relative_cost=0.05, floor=floor)
    calibration = calibrate(EpsilonGreedySlate(), P, 2, budget)
    policy = calibration.policy
    assert isinstance(policy, EpsilonGreedySlate)
    assert policy.pool == pool
    assert policy.epsilon == pytest.approx(epsilon, rel=1e-12)
    assert calibration.cost_exact
    assert calibration.relative_cost == pytest.approx(cost_from_marginals(calibration), rel=1e-9)
    np.testing.assert_array_equal(calibration.ranked, [0, 1, 2, 3])


def test_epsilon_greedy_under_a_floor_nothing_meets_is_greedy() -> None:
    budget = ExplorationBudget(relative_cost=0.05, floor=0.6)
    calibration = calibrate(EpsilonGreedySlate(), P, 2, budget)
    assert isinstance(calibration.policy, GreedySlate)
    assert calibration.relative_cost == 0.0 and calibration.cost_exact


def test_epsilon_greedy_with_a_fixed_top_position() -> None:
    # position 0 keeps candidate 0; position 1 draws from {1, 2, 3}: cost θ_1 (0.4 − 0.8/3)
    base = EpsilonGreedySlate(positions=(1,))
    calibration = calibrate(base, P, 2, ExplorationBudget(relative_cost=0.05))
    policy = calibration.policy
    assert isinstance(policy, EpsilonGreedySlate)
    assert policy.pool == 4 and policy.positions == (1,)
    assert policy.epsilon == pytest.approx(0.05 * V_GREEDY / (T1 * (0.4 - 0.8 / 3)), rel=1e-12)
    assert calibration.relative_cost == pytest.approx(cost_from_marginals(calibration), rel=1e-9)
    # pool 4 gives ε/3 = 0.149 < 0.2; pool 3 costs θ_1 (0.4 − 0.35) and affords ε = 1
    floored = calibrate(base, P, 2, ExplorationBudget(relative_cost=0.05, floor=0.2))
    assert (floored.policy.pool, floored.policy.epsilon) == (3, 1.0)  # type: ignore[attr-defined]
    assert floored.relative_cost == pytest.approx(T1 * 0.05 / V_GREEDY, rel=1e-12)


def test_epsilon_greedy_that_explores_nowhere_is_greedy() -> None:
    calibration = calibrate(EpsilonGreedySlate(positions=(5,)), P, 2, ExplorationBudget())
    assert isinstance(calibration.policy, GreedySlate)


def ri_cost(mean_beyond: float) -> float:
    """Random insertion's cost at ε = 1 in plays, both positions, mean p beyond the top 2."""
    return (0.5 + 0.3 * T1) / 2 - (1 + T1) / 2 * mean_beyond


@pytest.mark.parametrize(
    ("floor", "pool", "epsilon"),
    [
        (0.0, 4, 0.05 * V_GREEDY / ri_cost(0.2)),
        (0.05, 4, 0.05 * V_GREEDY / ri_cost(0.2)),  # ε/(2·2) = 0.052 >= 0.05
        (0.06, 3, 0.05 * V_GREEDY / ri_cost(0.3)),  # one candidate beyond: ε/2 = 0.19
    ],
)
def test_random_insertion_pool_and_epsilon(floor: float, pool: int, epsilon: float) -> None:
    budget = ExplorationBudget(relative_cost=0.05, floor=floor)
    calibration = calibrate(TopKRandomInsertion(), P, 2, budget)
    policy = calibration.policy
    assert isinstance(policy, TopKRandomInsertion)
    assert (policy.pool, policy.epsilon) == (pool, pytest.approx(epsilon, rel=1e-12))
    assert calibration.relative_cost == pytest.approx(cost_from_marginals(calibration), rel=1e-9)


def test_random_insertion_keeps_one_minus_epsilon_above_the_floor() -> None:
    # a budget that affords ε = 0.85 at pool 3 (cost 0.1 plays): the floor caps ε at 1 − 0.3
    budget = ExplorationBudget(relative_cost=0.85 * 0.1 / V_GREEDY, floor=0.3)
    calibration = calibrate(TopKRandomInsertion(pool=3), P, 2, budget)
    assert calibration.policy.epsilon == pytest.approx(0.7)  # type: ignore[attr-defined]
    assert calibration.relative_cost == pytest.approx(cost_from_marginals(calibration), rel=1e-9)


def test_random_insertion_without_room_to_insert_is_greedy() -> None:
    budget = ExplorationBudget(relative_cost=0.05)
    assert isinstance(calibrate(TopKRandomInsertion(pool=2), P, 2, budget).policy, GreedySlate)
    assert isinstance(calibrate(TopKRandomInsertion(), P, 4, budget).policy, GreedySlate)
    assert isinstance(
        calibrate(TopKRandomInsertion(positions=(3,)), P, 2, budget).policy, GreedySlate
    )


def test_a_budget_of_zero_and_a_greedy_base_are_greedy() -> None:
    for base in (EpsilonGreedySlate(), TopKRandomInsertion(), PlackettLuceSlate(), GreedySlate()):
        calibration = calibrate(base, P, 2, ExplorationBudget(relative_cost=0.0))
        assert isinstance(calibration.policy, GreedySlate) and calibration.cost_exact
    calibration = calibrate(GreedySlate(), P, 2, ExplorationBudget())
    assert isinstance(calibration.policy, GreedySlate) and calibration.relative_cost == 0.0


def test_plackett_luce_whose_floor_leaves_too_small_a_pool_is_greedy() -> None:
    calibration = calibrate(PlackettLuceSlate(), P, 3, ExplorationBudget(floor=0.4))
    assert isinstance(calibration.policy, GreedySlate)
    assert not calibration.cost_exact  # the Plackett-Luce family's cost is a bound


def test_plackett_luce_on_equal_scores_is_free() -> None:
    flat = np.full(4, 0.3)
    calibration = calibrate(PlackettLuceSlate(), flat, 2, ExplorationBudget(relative_cost=0.01))
    policy = calibration.policy
    assert isinstance(policy, PlackettLuceSlate)
    assert (policy.temperature, policy.pool, calibration.relative_cost) == (1.0, 4, 0.0)
    assert calibration.cost_exact


def test_plackett_luce_cost_bound_by_hand() -> None:
    # T = 1 over p: L_k is the e^{log w}-weighted mean of p over ranks >= k
    log_w = np.log(np.array([4.0, 2.0, 1.0, 1.0]))
    theta = np.array([1.0, 0.5])
    l0 = (4 * 0.5 + 2 * 0.4 + 0.3 + 0.1) / 8
    l1 = (2 * 0.4 + 0.3 + 0.1) / 4
    expected = (0.5 - l0) + 0.5 * (0.4 - l1)
    assert plackett_luce_cost_bound(P, log_w, theta) == pytest.approx(expected, rel=1e-12)
    mixed = 0.7 * np.array([l0, l1]) + 0.3 * np.array([1.3 / 4, 0.8 / 3])
    expected = (0.5 - mixed[0]) + 0.5 * (0.4 - mixed[1])
    assert plackett_luce_cost_bound(P, log_w, theta, 0.3) == pytest.approx(expected, rel=1e-12)


def test_examination_weights_and_params() -> None:
    np.testing.assert_allclose(ExplorationBudget().weights(3), [1, T1, 0.5])
    np.testing.assert_allclose(ExplorationBudget(examination="inverse").weights(3), [1, 0.5, 1 / 3])
    explicit = ExplorationBudget(examination=(1.0, 0.5, 0.5))
    np.testing.assert_array_equal(explicit.weights(2), [1.0, 0.5])
    assert not explicit.weights(2).flags.writeable
    assert explicit.params() == {"budget": 0.005, "floor": 0.0, "examination": [1.0, 0.5, 0.5]}
    assert ExplorationBudget(relative_cost=0.01, floor=0.02).params() == {
        "budget": 0.01, "floor": 0.02, "examination": "log",
    }  # fmt: skip
    with pytest.raises(ValueError, match=r"^examination has 3 weights; a slate of 4 needs 4$"):
        explicit.weights(4)


def test_calibration_logs_the_exploration_it_used() -> None:
    budget = ExplorationBudget(relative_cost=0.05)
    calibration = calibrate(EpsilonGreedySlate(), P, 2, budget)
    assert calibration.exploration(budget) == {
        "policy": "epsilon_greedy",
        "epsilon": calibration.policy.epsilon,  # type: ignore[attr-defined]
        "pool": 4,
        "budget": 0.05,
        "floor": 0.0,
        "examination": "log",
        "expected_cost": calibration.relative_cost,
        "cost_exact": True,
    }


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"relative_cost": -0.1}, r"relative_cost must be finite and >= 0; got -0\.1"),
        ({"relative_cost": math.inf}, r"relative_cost must be finite and >= 0; got inf"),
        ({"floor": 1.0}, r"floor must be in \[0, 1\); got 1\.0"),
        ({"floor": -0.01}, r"floor must be in \[0, 1\); got -0\.01"),
        ({"examination": "flat"}, r"examination must be 'log', 'inverse' or a tuple of weights; "
         r"got 'flat'"),
        ({"examination": ()}, r"examination weights must be a non-empty tuple of finite values "
         r">= 0; got \(\)"),
        ({"examination": (1.0, -0.5)}, r"examination weights must be a non-empty tuple of finite "
         r"values >= 0; got \(1\.0, -0\.5\)"),
        ({"examination": (1.0, math.nan)}, r"examination weights must be a non-empty tuple of "
         r"finite values >= 0; got \(1\.0, nan\)"),
        ({"examination": (0.5, 1.0)}, r"examination weights must be nonincreasing; "
         r"got \(0\.5, 1\.0\)"),
    ],
)  # fmt: skip
def test_bad_budgets_are_refused_with_their_message(params: dict, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{message}$"):
        ExplorationBudget(**params)


def test_edge_budgets_are_accepted() -> None:
    assert ExplorationBudget(relative_cost=0.0, floor=0.0, examination=(1.0, 1.0, 0.0)).floor == 0
    assert ExplorationBudget(floor=0.999).floor == 0.999


@pytest.mark.parametrize(
    ("scores", "message"),
    [
        ([0.2, 1.5], "got 1.5 at index 1"),
        ([-0.1, 0.5], "got -0.1 at index 0"),
        ([0.2, 0.3, math.nan], "got nan at index 2"),
    ],
)
def test_scores_that_are_not_probabilities_are_named(scores: list[float], message: str) -> None:
    full = "scores must be calibrated P(play) in [0, 1] for an exploration budget; " + message
    with pytest.raises(ValueError, match=f"^{re.escape(full)}$"):
        validate_probabilities(np.array(scores))


def test_probabilities_at_the_edges_are_accepted() -> None:
    np.testing.assert_array_equal(validate_probabilities(np.array([0.0, 1.0])), [0.0, 1.0])
    assert validate_probabilities(np.array([])).size == 0


def test_an_unknown_family_is_named() -> None:
    message = (
        r"^base must be an EpsilonGreedySlate, TopKRandomInsertion, PlackettLuceSlate or "
        r"GreedySlate; got str$"
    )
    with pytest.raises(TypeError, match=message):
        calibrate("greedy", P, 2, ExplorationBudget())  # type: ignore[arg-type]


# ---- edges: zero value, exact floors, the ranking handed on -----------------------------------

ZERO = np.zeros(4)


def test_exploring_among_candidates_worth_nothing_costs_nothing() -> None:
    for base in (EpsilonGreedySlate(), TopKRandomInsertion()):
        calibration = calibrate(base, ZERO, 2, ExplorationBudget(relative_cost=0.05))
        assert calibration.policy.epsilon == 1.0  # type: ignore[attr-defined]
        assert calibration.relative_cost == 0.0
    # with a floor the search over pools decides: ε = 1 and the deepest pool whose 1/M' fits
    budget = ExplorationBudget(relative_cost=0.05, floor=0.2)
    floored = calibrate(EpsilonGreedySlate(), ZERO, 2, budget)
    assert (floored.policy.epsilon, floored.policy.pool) == (1.0, 4)  # type: ignore[attr-defined]
    assert floored.relative_cost == 0.0


def test_examination_weights_of_zero_make_every_cost_zero() -> None:
    budget = ExplorationBudget(relative_cost=0.05, examination=(0.0, 0.0))
    for base in (EpsilonGreedySlate(), TopKRandomInsertion(), PlackettLuceSlate()):
        calibration = calibrate(base, P, 2, budget)
        assert calibration.relative_cost == 0.0


def test_a_floor_met_exactly_is_met() -> None:
    # ε-greedy: pool 2 affords ε = 1, and 1/2 >= 0.5; pools 3 and 4 fall short
    budget = ExplorationBudget(relative_cost=0.05, floor=0.5)
    calibration = calibrate(EpsilonGreedySlate(), P, 2, budget)
    assert (calibration.policy.pool, calibration.policy.epsilon) == (2, 1.0)  # type: ignore[attr-defined]
    # random insertion, pool 4: ε = 0.9 capped at 1 − 0.2 = 0.8, and 0.8 / (2 · 2) = 0.2 exactly
    budget = ExplorationBudget(relative_cost=0.9 * ri_cost(0.2) / V_GREEDY, floor=0.2)
    calibration = calibrate(TopKRandomInsertion(), P, 2, budget)
    assert calibration.policy.pool == 4  # type: ignore[attr-defined]
    assert calibration.policy.epsilon == pytest.approx(0.8)  # type: ignore[attr-defined]


def test_random_insertion_that_affords_epsilon_one_keeps_it_whatever_the_floor() -> None:
    # ε = 1 leaves the last greedy candidate nothing to keep: there is no 1 − ε to floor
    budget = ExplorationBudget(relative_cost=0.9, floor=0.3)
    calibration = calibrate(TopKRandomInsertion(pool=3), P, 2, budget)
    assert calibration.policy.epsilon == 1.0  # type: ignore[attr-defined]


def test_calibrations_hand_on_the_ranking_they_computed() -> None:
    budget = ExplorationBudget(relative_cost=0.05)
    cases = [
        calibrate(EpsilonGreedySlate(), P, 2, budget),
        calibrate(EpsilonGreedySlate(), P, 2, ExplorationBudget(relative_cost=0.05, floor=0.05)),
        calibrate(EpsilonGreedySlate(), P, 2, ExplorationBudget(relative_cost=0.05, floor=0.9)),
        calibrate(EpsilonGreedySlate(positions=(5,)), P, 2, budget),
        calibrate(TopKRandomInsertion(), P, 2, budget),
        calibrate(TopKRandomInsertion(), P, 2, ExplorationBudget(relative_cost=0.05, floor=0.06)),
        calibrate(PlackettLuceSlate(), P, 2, budget),
        calibrate(PlackettLuceSlate(), np.full(4, 0.3), 2, budget),
        calibrate(PlackettLuceSlate(), P, 2, ExplorationBudget(relative_cost=1e-12, floor=0.2)),
    ]
    for calibration in cases:
        assert calibration.ranked is not None
        np.testing.assert_array_equal(calibration.ranked, np.arange(calibration.ranked.size))
        assert calibration.ranked.size >= 2


def test_plackett_luce_cost_is_a_bound_not_exact() -> None:
    calibration = calibrate(PlackettLuceSlate(), P, 2, ExplorationBudget(relative_cost=0.05))
    assert isinstance(calibration.policy, PlackettLuceSlate)
    assert calibration.cost_exact is False
    assert 0.0 < calibration.relative_cost <= 0.05
    cold = calibrate(PlackettLuceSlate(), P, 2, ExplorationBudget(relative_cost=1e-12, floor=0.2))
    assert isinstance(cold.policy, GreedySlate)
    assert cold.cost_exact is False and cold.relative_cost == 0.0
    narrow = calibrate(PlackettLuceSlate(), P, 3, ExplorationBudget(floor=0.4))
    assert isinstance(narrow.policy, GreedySlate) and narrow.cost_exact is False


MANY = np.linspace(0.9, 0.1, 10)  # ten candidates in greedy order


@pytest.mark.parametrize(("floor", "pool"), [(0.25, 4), (0.2, 5), (0.3, 3)])
def test_plackett_luce_pool_is_at_most_one_over_the_floor(floor: float, pool: int) -> None:
    # a budget large enough that the widest pool the floor allows is taken
    budget = ExplorationBudget(relative_cost=0.9, floor=floor)
    calibration = calibrate(PlackettLuceSlate(), MANY, 2, budget)
    policy = calibration.policy
    assert isinstance(policy, PlackettLuceSlate)
    assert policy.pool == pool
    assert policy.uniform_mix == pytest.approx(floor * pool)


def test_plackett_luce_pool_equal_to_the_slate() -> None:
    budget = ExplorationBudget(relative_cost=0.9, floor=0.5)
    calibration = calibrate(PlackettLuceSlate(), MANY, 2, budget)
    assert isinstance(calibration.policy, PlackettLuceSlate)
    assert calibration.policy.pool == 2
    one = calibrate(PlackettLuceSlate(), MANY, 1, ExplorationBudget(relative_cost=0.9, floor=0.9))
    assert isinstance(one.policy, PlackettLuceSlate) and one.policy.pool == 1


def test_plackett_luce_on_equal_scores_keeps_the_floors_mix() -> None:
    flat = np.full(4, 0.3)
    budget = ExplorationBudget(relative_cost=0.01, floor=0.1)
    calibration = calibrate(PlackettLuceSlate(), flat, 2, budget)
    assert calibration.policy.uniform_mix == pytest.approx(0.4)  # type: ignore[attr-defined]


def test_plackett_luce_base_pool_bounds_the_calibrated_one() -> None:
    calibration = calibrate(
        PlackettLuceSlate(pool=3), MANY, 2, ExplorationBudget(relative_cost=0.9)
    )
    assert calibration.policy.pool == 3  # type: ignore[attr-defined]


def test_expected_plays_uses_the_first_k_weights() -> None:
    marginals = np.array([[1.0, 0, 0, 0], [0, 0.5, 0.5, 0]])
    theta = np.array([1.0, 0.5, 0.25])
    assert expected_plays(marginals, P, theta) == pytest.approx(0.5 + 0.5 * 0.35)


def test_the_first_bad_score_is_named_after_good_zeros_and_ones() -> None:
    with pytest.raises(ValueError, match=r"got 1\.5 at index 2$"):
        validate_probabilities(np.array([0.0, 1.0, 1.5]))
    assert validate_probabilities([0, 1]).dtype == np.float64  # type: ignore[arg-type]


def test_examination_weights_given_as_a_list() -> None:
    budget = ExplorationBudget(examination=[1.0, 0.5])  # type: ignore[arg-type]
    np.testing.assert_array_equal(budget.weights(2), [1.0, 0.5])
    assert budget.params()["examination"] == [1.0, 0.5]
