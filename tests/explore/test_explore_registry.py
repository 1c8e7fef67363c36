"""Policies by name: built by ``make_policy``, and rebuilt from a logged decision's policy
name and exploration parameters so that the rebuilt policy replays the decision exactly."""

from __future__ import annotations

import numpy as np
import pytest

from explore import (
    CalibratedSlate,
    EpsilonGreedySlate,
    make_policy,
    policy_for_record,
    rng_for_decision,
)

SCORES = np.random.default_rng(8).beta(1.0, 6.0, size=300)
DECISION_ID = "5a0d8c1e-2b3f-4e5d-9c6b-7a8f9e0d1c2b"
NAMES = ("greedy", "epsilon_greedy", "random_insertion", "plackett_luce")


@pytest.mark.parametrize("budget", [None, 0.01])
@pytest.mark.parametrize("name", NAMES)
def test_a_rebuilt_policy_replays_the_logged_decision(name: str, budget: float | None) -> None:
    positions = (1, 2, 5) if name in ("epsilon_greedy", "random_insertion") else None
    policy = make_policy(name, pool=60, positions=positions, budget=budget, uniform_mix=0.1)
    slate = policy.decide(SCORES, 12, rng_for_decision(DECISION_ID))
    logged = slate.exploration or policy.params()
    rebuilt = policy_for_record(policy.name, logged)
    again = rebuilt.decide(SCORES, 12, rng_for_decision(DECISION_ID))
    np.testing.assert_array_equal(again.indices, slate.indices)
    np.testing.assert_array_equal(again.prefix_propensity, slate.prefix_propensity)
    np.testing.assert_array_equal(again.cond_propensity, slate.cond_propensity)
    assert isinstance(policy, CalibratedSlate) == (budget is not None)


def test_the_demo_uniform_policy_is_rebuilt_as_epsilon_one() -> None:
    rebuilt = policy_for_record("uniform", {"epsilon": 1.0, "pool": None})
    assert rebuilt == EpsilonGreedySlate(epsilon=1.0)


def test_unknown_policy_names_are_refused() -> None:
    with pytest.raises(ValueError, match=r"policy must be one of .*; got 'softmax'"):
        make_policy("softmax")
    with pytest.raises(ValueError, match=r"got 'bandit'"):
        policy_for_record("calibrated_x", {"policy": "bandit"})
