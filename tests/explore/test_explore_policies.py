"""Every policy behind the one interface: exact slate probabilities, prefixes and marginals by
exhaustive enumeration on small cases, logged propensities consistent with them, closed forms
checked by hand, the top-M order, and validation that names the field."""

from __future__ import annotations

import itertools
from collections.abc import Callable

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
    greedy_order,
    top_order,
)

SCORES_6 = np.array([0.3, 0.9, 0.1, 0.5, 0.7, 0.2])  # greedy order 1, 4, 3, 0, 5, 2
TIED_6 = np.array([0.5, 0.2, 0.5, 0.5, 0.1, 0.2])

POLICIES: dict[str, Policy] = {
    "greedy": GreedySlate(),
    "epsilon_greedy": EpsilonGreedySlate(epsilon=0.3),
    "epsilon_greedy_pool4": EpsilonGreedySlate(epsilon=0.5, pool=4),
    "epsilon_greedy_positions_1_2": EpsilonGreedySlate(epsilon=0.4, positions=(1, 2)),
    "epsilon_greedy_position_2_pool5": EpsilonGreedySlate(epsilon=1.0, pool=5, positions=(2,)),
    "random_insertion": TopKRandomInsertion(epsilon=0.3),
    "random_insertion_always_pool5": TopKRandomInsertion(epsilon=1.0, pool=5),
    "random_insertion_positions_0_2": TopKRandomInsertion(epsilon=0.7, positions=(0, 2)),
    "plackett_luce": PlackettLuceSlate(temperature=0.2),
    "plackett_luce_cold": PlackettLuceSlate(temperature=1e-4),
    "plackett_luce_pool4_mix": PlackettLuceSlate(temperature=0.1, pool=4, uniform_mix=0.3),
    "plackett_luce_mix_cold": PlackettLuceSlate(temperature=1e-5, uniform_mix=0.5),
    "calibrated_epsilon_greedy": CalibratedSlate(
        base=EpsilonGreedySlate(), budget=ExplorationBudget(relative_cost=0.05)
    ),
    "calibrated_random_insertion": CalibratedSlate(
        base=TopKRandomInsertion(positions=(1, 2)),
        budget=ExplorationBudget(relative_cost=0.1, floor=0.01),
    ),
    "calibrated_plackett_luce": CalibratedSlate(
        base=PlackettLuceSlate(), budget=ExplorationBudget(relative_cost=0.05, floor=0.02)
    ),
}


def enumerate_slates(policy: Policy, scores: np.ndarray, k: int) -> dict[tuple[int, ...], float]:
    return {
        s: policy.slate_probability(scores, np.array(s))
        for s in itertools.permutations(range(scores.size), k)
    }


@pytest.mark.parametrize("name", list(POLICIES))
def test_is_a_policy_with_a_name_and_params(name: str) -> None:
    policy = POLICIES[name]
    assert isinstance(policy, Policy)
    assert policy.name and policy.version
    assert isinstance(policy.params(), dict)


@pytest.mark.parametrize("scores", [SCORES_6, TIED_6], ids=["distinct", "tied"])
@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("name", list(POLICIES))
def test_slate_probabilities_sum_to_one_and_give_the_marginals(
    name: str, k: int, scores: np.ndarray
) -> None:
    policy = POLICIES[name]
    probabilities = enumerate_slates(policy, scores, k)
    values = np.array(list(probabilities.values()))
    assert np.all(values >= 0.0)
    assert values.sum() == pytest.approx(1.0, abs=1e-12)
    enumerated = np.zeros((k, scores.size))
    for slate, p in probabilities.items():
        enumerated[np.arange(k), list(slate)] += p
    np.testing.assert_allclose(policy.marginals(scores, k), enumerated, atol=1e-14, rtol=0)


@pytest.mark.parametrize("name", list(POLICIES))
def test_prefix_probabilities_are_sums_over_completions(name: str) -> None:
    """P(prefix a_1..a_j) logged by decide = Σ over the slates that start with it."""
    policy = POLICIES[name]
    k = 3
    probabilities = enumerate_slates(policy, SCORES_6, k)
    rng = np.random.default_rng(5)
    for _ in range(60):
        slate = policy.decide(SCORES_6, k, rng)
        for j in range(1, k + 1):
            head = tuple(slate.indices[:j])
            total = sum(p for s, p in probabilities.items() if s[:j] == head)
            assert slate.prefix_propensity[j - 1] == pytest.approx(total, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("name", list(POLICIES))
def test_decide_logs_propensities_consistent_with_the_policy(name: str) -> None:
    policy = POLICIES[name]
    k = 3
    marginals = policy.marginals(SCORES_6, k)
    greedy = greedy_order(SCORES_6)[:k]
    rng = np.random.default_rng(11)
    for _ in range(200):
        slate = policy.decide(SCORES_6, k, rng)
        assert len(slate) == k and np.unique(slate.indices).size == k
        np.testing.assert_array_equal(slate.scores, SCORES_6[slate.indices])
        assert slate.probability == pytest.approx(
            policy.slate_probability(SCORES_6, slate.indices), rel=1e-13
        )
        np.testing.assert_allclose(
            np.cumprod(slate.cond_propensity), slate.prefix_propensity, rtol=1e-13
        )
        assert np.all((slate.cond_propensity > 0) & (slate.cond_propensity <= 1 + 1e-15))
        if slate.marginals_exact:
            np.testing.assert_allclose(
                slate.propensity, marginals[np.arange(k), slate.indices], rtol=1e-13
            )
        else:
            assert np.isnan(slate.propensity).all()
        np.testing.assert_array_equal(slate.explored, slate.indices != greedy)


def test_greedy_policy_shows_the_top_k_with_probability_one() -> None:
    slate = GreedySlate().decide(SCORES_6, 3, np.random.default_rng(0))
    np.testing.assert_array_equal(slate.indices, [1, 4, 3])
    assert slate.probability == 1.0 and not slate.explored.any()
    assert GreedySlate().slate_probability(SCORES_6, np.array([1, 3, 4])) == 0.0


def test_epsilon_greedy_keeps_fixed_positions_greedy_and_explores_beyond_the_top_k() -> None:
    """positions=(2,), pool 5: position 2 is uniform over the pool minus g_0, g_1 (3 candidates:
    ranks 2, 3, 4) with ε = 1; positions 0 and 1 always show the greedy candidates."""
    policy = EpsilonGreedySlate(epsilon=1.0, pool=5, positions=(2,))
    marginals = policy.marginals(SCORES_6, 3)
    np.testing.assert_array_equal(marginals[0], np.eye(6)[1])
    np.testing.assert_array_equal(marginals[1], np.eye(6)[4])
    np.testing.assert_allclose(marginals[2, [3, 0, 5]], 1 / 3)
    assert marginals[2, 2] == 0.0  # outside the pool
    rng = np.random.default_rng(0)
    shown = {int(policy.decide(SCORES_6, 3, rng).indices[2]) for _ in range(200)}
    assert shown == {3, 0, 5}


def test_random_insertion_marginals_by_hand() -> None:
    """ε = 0.6, all 3 positions, B = ranks 3..5 (candidates 0, 5, 2): g_k stays with
    1 − 0.6·(k+1)/3; g_{k-1} moves down with 0.6·k/3; an inserted candidate has 0.6/9."""
    policy = TopKRandomInsertion(epsilon=0.6)
    marginals = policy.marginals(SCORES_6, 3)
    g = [1, 4, 3]
    for k in range(3):
        assert marginals[k, g[k]] == pytest.approx(1 - 0.6 * (k + 1) / 3)
        if k:
            assert marginals[k, g[k - 1]] == pytest.approx(0.6 * k / 3)
        np.testing.assert_allclose(marginals[k, [0, 5, 2]], 0.6 / 9)
    inserted_at_1 = np.array([1, 5, 4])
    assert policy.slate_probability(SCORES_6, inserted_at_1) == pytest.approx(0.6 / 9)
    assert policy.slate_probability(SCORES_6, np.array([1, 5, 3])) == 0.0  # g_1 dropped


def test_random_insertion_without_candidates_beyond_the_top_k_is_greedy() -> None:
    policy = TopKRandomInsertion(epsilon=1.0, pool=3)
    slate = policy.decide(SCORES_6, 3, np.random.default_rng(0))
    np.testing.assert_array_equal(slate.indices, [1, 4, 3])
    np.testing.assert_array_equal(slate.propensity, 1.0)


def test_plackett_luce_conditional_propensity_by_hand() -> None:
    """T = 1, no mix: π(a_1) = e^{s_a}/Σ e^{s}; π(a_2 | a_1) renormalizes without a_1."""
    policy = PlackettLuceSlate(temperature=1.0)
    slate = np.array([4, 1])
    e = np.exp(SCORES_6)
    expected = e[4] / e.sum() * e[1] / (e.sum() - e[4])
    assert policy.slate_probability(SCORES_6, slate) == pytest.approx(expected, rel=1e-14)


def test_plackett_luce_floor_on_every_conditional_propensity() -> None:
    policy = PlackettLuceSlate(temperature=1e-3, uniform_mix=0.3)
    rng = np.random.default_rng(2)
    for _ in range(100):
        slate = policy.decide(SCORES_6, 4, rng)
        assert np.all(slate.cond_propensity >= 0.3 / 6 - 1e-15)


def test_plackett_luce_marginals_are_exact_for_one_position_and_refused_for_large_pools() -> None:
    scores = np.linspace(0.0, 1.0, 40)
    policy = PlackettLuceSlate(temperature=0.1)
    top = policy.marginals(scores, 1)
    assert top.sum() == pytest.approx(1.0) and top.shape == (1, 40)
    slate = policy.decide(scores, 1, np.random.default_rng(0))
    assert slate.marginals_exact
    assert slate.propensity[0] == pytest.approx(top[0, slate.indices[0]], rel=1e-13)
    with pytest.raises(ValueError, match=r"exact only for k = 1 or a pool of at most 14"):
        policy.marginals(scores, 3)
    assert not policy.decide(scores, 3, np.random.default_rng(0)).marginals_exact


def test_top_order_is_the_head_of_the_greedy_order() -> None:
    rng = np.random.default_rng(9)
    for t in range(300):
        n = int(rng.integers(1, 400))
        scores = rng.integers(0, 4, n).astype(float) if t % 2 else rng.random(n)
        m = int(rng.integers(1, n + 1))
        np.testing.assert_array_equal(top_order(scores, m), greedy_order(scores)[:m])


@pytest.mark.parametrize(
    "make",
    [
        lambda rng, n: rng.beta(1.0, 8.0, n),  # the sampled threshold lets a few more through
        lambda rng, n: np.sort(rng.random(n)),  # ascending: the sample still spans every score
        lambda rng, n: np.round(rng.random(n), 1),  # ties at the threshold: lowest index first
        lambda rng, n: np.where(rng.random(n) < 0.9, 0.0, rng.random(n)),  # most tied at 0
        lambda rng, n: np.full(n, 0.25),  # all tied: every candidate passes the threshold
        # High scores only at even indices, which an even stride samples alone: too few pass
        # the sample's threshold, and the exact partition decides.
        lambda rng, n: np.where(np.arange(n) % 2 == 0, 0.5 + rng.random(n), 0.5 * rng.random(n)),
    ],
)
def test_top_order_on_many_candidates_is_the_head_of_the_greedy_order(make: Callable) -> None:
    rng = np.random.default_rng(4)
    for n in (1000, 2999):
        scores = make(rng, n)
        for m in (1, 7, 20, 100, 240):
            np.testing.assert_array_equal(top_order(scores, m), greedy_order(scores)[:m])


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: EpsilonGreedySlate(positions=()), r"positions must be None \(all\)"),
        (lambda: EpsilonGreedySlate(positions=(1, 1)), r"positions must be distinct"),
        (lambda: TopKRandomInsertion(positions=(-1,)), r"positions must be 0-based ints >= 0"),
        (lambda: TopKRandomInsertion(epsilon=2.0), r"epsilon must be in \[0, 1\]; got 2\.0"),
        (lambda: TopKRandomInsertion(pool=0), r"pool must be None or >= 1; got 0"),
        (lambda: PlackettLuceSlate(temperature=0.0), r"temperature must be finite and > 0"),
        (lambda: PlackettLuceSlate(temperature=np.inf), r"temperature must be finite and > 0"),
        (lambda: PlackettLuceSlate(uniform_mix=1.5), r"uniform_mix must be in \[0, 1\]"),
        (lambda: PlackettLuceSlate(pool=-2), r"pool must be None or >= 1; got -2"),
    ],
)
def test_bad_policy_parameters_raise_naming_the_field(
    make: Callable[[], Policy], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("name", list(POLICIES))
def test_bad_scores_raise_in_decide(name: str) -> None:
    with pytest.raises(ValueError, match=r"scores must be finite; got nan at index 1"):
        POLICIES[name].decide(np.array([0.1, np.nan, 0.3]), 2, np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"k must be >= 1; got 0"):
        POLICIES[name].decide(SCORES_6, 0, np.random.default_rng(0))


@pytest.mark.parametrize(
    ("epsilon", "pool", "positions"),
    [(0.2, None, None), (0.05, 6, None), (0.3, 7, (1, 3)), (1.0, 5, (0,)), (0.0, 4, None)],
)
def test_epsilon_greedy_prefix_extensions_are_its_slate_probabilities(
    epsilon: float, pool: int | None, positions: tuple[int, ...] | None
) -> None:
    from explore import EpsilonGreedySlate

    policy = EpsilonGreedySlate(epsilon=epsilon, pool=pool, positions=positions)
    rng = np.random.default_rng(7)
    scores = rng.random(9)
    for length in range(5):
        for _ in range(4):
            prefix = rng.permutation(9)[:length]
            if rng.random() < 0.5:  # the greedy prefix, where the greedy branch counts too
                prefix = np.argsort(-scores, kind="stable")[:length]
            extended = policy.prefix_extensions(scores, prefix)
            expected = [policy.slate_probability(scores, np.append(prefix, a)) for a in range(9)]
            np.testing.assert_allclose(extended, expected, rtol=0, atol=1e-15)
