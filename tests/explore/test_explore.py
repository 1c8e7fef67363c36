"""EpsilonGreedySlate: exact slate probabilities and marginals (checked by enumeration; the
sampling checks are in test_explore_statistics), logged propensities consistent with them,
replayable decisions, and validation."""

from __future__ import annotations

import itertools
import uuid

import numpy as np
import pytest

from explore import EpsilonGreedySlate, Policy, greedy_order, rng_for_decision

SCORES_5 = np.array([0.3, 0.9, 0.1, 0.5, 0.7])  # greedy order 1, 4, 3, 0, 2
SETTINGS = [
    pytest.param(0.1, None, id="eps0.1-pool_all"),
    pytest.param(0.3, 4, id="eps0.3-pool4"),
    pytest.param(0.5, 3, id="eps0.5-pool_eq_k"),
    pytest.param(0.2, 2, id="eps0.2-pool_below_k"),
    pytest.param(1.0, None, id="eps1-uniform"),
    pytest.param(1.0, 4, id="eps1-pool4"),
    pytest.param(0.0, None, id="eps0-greedy"),
]


def all_slates(n: int, k: int) -> list[tuple[int, ...]]:
    return list(itertools.permutations(range(n), k))


def test_epsilon_greedy_is_a_policy() -> None:
    assert isinstance(EpsilonGreedySlate(), Policy)


@pytest.mark.parametrize(("epsilon", "pool"), SETTINGS)
def test_slate_probabilities_sum_to_one_and_give_the_marginals(
    epsilon: float, pool: int | None
) -> None:
    policy = EpsilonGreedySlate(epsilon=epsilon, pool=pool)
    n, k = SCORES_5.size, 3
    slates = all_slates(n, k)
    probs = np.array([policy.slate_probability(SCORES_5, np.array(s)) for s in slates])
    assert np.all(probs >= 0.0)
    assert abs(probs.sum() - 1.0) < 1e-12
    enumerated = np.zeros((k, n))
    for s, p in zip(slates, probs, strict=True):
        enumerated[np.arange(k), list(s)] += p
    marginals = policy.marginals(SCORES_5, k)
    assert marginals.shape == (k, n)
    np.testing.assert_allclose(marginals, enumerated, atol=1e-15, rtol=1e-12)
    np.testing.assert_allclose(marginals.sum(axis=1), 1.0, atol=1e-12)
    # Each item is at some position at most once: column sums are P(item shown) <= 1.
    assert np.all(marginals.sum(axis=0) <= 1.0 + 1e-12)


@pytest.mark.parametrize(("epsilon", "pool"), SETTINGS)
def test_slate_probability_closed_form(epsilon: float, pool: int | None) -> None:
    """The greedy slate gets (1 − ε) + ε/(M·(M−1)·(M−2)); a pool slate gets ε/(M(M−1)(M−2));
    anything using an item outside the pool gets 0."""
    policy = EpsilonGreedySlate(epsilon=epsilon, pool=pool)
    m = 5 if pool is None else max(pool, 3)
    uniform = epsilon / (m * (m - 1) * (m - 2))
    greedy = greedy_order(SCORES_5)
    assert policy.slate_probability(SCORES_5, greedy[:3]) == pytest.approx(
        1 - epsilon + uniform, rel=1e-12
    )
    in_pool = greedy[[2, 0, 1]]
    assert policy.slate_probability(SCORES_5, in_pool) == pytest.approx(uniform, rel=1e-12)
    if m < 5:
        outside = np.array([greedy[0], greedy[1], greedy[4]])
        assert policy.slate_probability(SCORES_5, outside) == 0.0
    # Not a slate: repeated item, out-of-range index.
    assert policy.slate_probability(SCORES_5, np.array([1, 1, 4])) == 0.0
    assert policy.slate_probability(SCORES_5, np.array([1, 4, 7])) == 0.0


@pytest.mark.parametrize(("epsilon", "pool"), SETTINGS)
def test_decide_logs_propensities_consistent_with_the_policy(
    epsilon: float, pool: int | None
) -> None:
    policy = EpsilonGreedySlate(epsilon=epsilon, pool=pool)
    k = 3
    marginals = policy.marginals(SCORES_5, k)
    greedy = greedy_order(SCORES_5)
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(300):
        slate = policy.decide(SCORES_5, k, rng)
        seen.add(tuple(slate.indices))
        assert len(slate) == k and np.unique(slate.indices).size == k
        np.testing.assert_array_equal(slate.scores, SCORES_5[slate.indices])
        assert slate.prefix_propensity[-1] == pytest.approx(
            policy.slate_probability(SCORES_5, slate.indices), rel=1e-15
        )
        assert slate.probability == slate.prefix_propensity[-1]
        for j in range(k):
            assert slate.prefix_propensity[j] == pytest.approx(
                np.prod(slate.cond_propensity[: j + 1]), rel=1e-14
            )
            assert slate.propensity[j] == pytest.approx(marginals[j, slate.indices[j]], rel=1e-15)
        assert np.all((slate.cond_propensity > 0) & (slate.cond_propensity <= 1))
        np.testing.assert_array_equal(slate.explored, slate.indices != greedy[:k])
    if epsilon == 0.0:
        assert seen == {tuple(greedy[:k])}
    else:
        assert len(seen) > 1


def test_conditional_propensity_after_a_greedy_prefix_by_hand() -> None:
    """ε = 0.3, pool = all 5, greedy slate (1, 4, 3): P(a1) = 0.7 + 0.3/5; P(a1 a2) = 0.7 +
    0.3/20; P(a1 a2 a3) = 0.7 + 0.3/60."""
    policy = EpsilonGreedySlate(epsilon=0.3)
    rng = np.random.default_rng(1)
    while True:
        slate = policy.decide(SCORES_5, 3, rng)
        if tuple(slate.indices) == (1, 4, 3):
            break
    prefix = np.array([0.7 + 0.3 / 5, 0.7 + 0.3 / 20, 0.7 + 0.3 / 60])
    np.testing.assert_allclose(slate.prefix_propensity, prefix, rtol=1e-15)
    np.testing.assert_allclose(slate.cond_propensity, prefix / np.r_[1.0, prefix[:-1]], rtol=1e-15)
    np.testing.assert_allclose(slate.propensity, 0.7 + 0.3 / 5, rtol=1e-15)


def test_same_decision_id_replays_the_same_slate() -> None:
    policy = EpsilonGreedySlate(epsilon=0.5, pool=6)
    scores = np.linspace(0.1, 0.8, 8)
    decision_id = "6f1c2a8e-3b7d-4c1e-9a2f-0d5e8b7c6a41"
    a = policy.decide(scores, 4, rng_for_decision(decision_id))
    b = policy.decide(scores, 4, rng_for_decision(uuid.UUID(decision_id)))
    for name in ("indices", "propensity", "cond_propensity", "prefix_propensity", "explored"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    draws = {
        tuple(policy.decide(scores, 4, rng_for_decision(uuid.UUID(int=i))).indices)
        for i in range(1, 51)
    }
    # With ε = 0.5, all 50 ids giving one slate would have probability < 1e-14.
    assert len(draws) > 1
    first_draws = {
        float(rng_for_decision(uuid.uuid5(uuid.NAMESPACE_DNS, str(i))).random()) for i in range(50)
    }
    assert len(first_draws) == 50


def test_bad_decision_id_raises() -> None:
    with pytest.raises(ValueError):
        rng_for_decision("not-a-uuid")


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"epsilon": -0.1}, r"epsilon must be in \[0, 1\]; got -0\.1"),
        ({"epsilon": 1.5}, r"epsilon must be in \[0, 1\]; got 1\.5"),
        ({"pool": 0}, r"pool must be None or >= 1; got 0"),
        ({"pool": -3}, r"pool must be None or >= 1; got -3"),
    ],
)
def test_bad_policy_parameters_raise(params: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        EpsilonGreedySlate(**params)


BAD_CALLS = [
    pytest.param(np.array([0.1, np.nan, 0.3]), 2, r"scores must be finite; got nan at index 1",
                 id="nan"),
    pytest.param(np.array([0.1, np.inf]), 1, r"scores must be finite; got inf at index 1",
                 id="inf"),
    pytest.param(np.array([]), 1, r"scores must be a non-empty 1-D array; got shape \(0,\)",
                 id="empty"),
    pytest.param(np.ones((2, 3)), 1, r"scores must be a non-empty 1-D array; got shape \(2, 3\)",
                 id="2d"),
    pytest.param(np.array([0.1, 0.2]), 0, r"k must be >= 1; got 0", id="k0"),
]  # fmt: skip


@pytest.mark.parametrize(("scores", "k", "match"), BAD_CALLS)
def test_bad_scores_or_k_raise_in_decide_and_marginals(
    scores: np.ndarray, k: int, match: str
) -> None:
    policy = EpsilonGreedySlate(epsilon=0.2)
    with pytest.raises(ValueError, match=match):
        policy.decide(scores, k, np.random.default_rng(0))
    with pytest.raises(ValueError, match=match):
        policy.marginals(scores, k)


def test_greedy_tie_break_is_by_lower_index() -> None:
    policy = EpsilonGreedySlate(epsilon=0.0)
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(policy.decide(np.full(5, 0.5), 3, rng).indices, [0, 1, 2])
    tied = np.array([1.0, 2.0, 2.0, 1.0, 2.0])
    np.testing.assert_array_equal(policy.decide(tied, 4, rng).indices, [1, 2, 4, 0])
    np.testing.assert_array_equal(greedy_order(tied), [1, 2, 4, 0, 3])
    # The pool follows the same order: with pool 3 and ties, item 0 is outside it.
    explore = EpsilonGreedySlate(epsilon=1.0, pool=3)
    marginals = explore.marginals(tied, 2)
    np.testing.assert_allclose(marginals[:, [1, 2, 4]], 1 / 3)
    np.testing.assert_array_equal(marginals[:, [0, 3]], 0.0)


def test_k_larger_than_candidates_shows_every_candidate() -> None:
    policy = EpsilonGreedySlate(epsilon=0.4)
    slate = policy.decide(np.array([0.2, 0.8, 0.5]), 10, np.random.default_rng(3))
    assert sorted(slate.indices) == [0, 1, 2]
    assert policy.marginals(np.array([0.2, 0.8, 0.5]), 10).shape == (3, 3)
    assert slate.prefix_propensity[-1] == pytest.approx(
        policy.slate_probability(np.array([0.2, 0.8, 0.5]), slate.indices), rel=1e-15
    )
