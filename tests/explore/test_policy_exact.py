"""The policies' edges, by hand: parameters as logged, every refusal's whole message, slates that
are not slates, k above the number of candidates, the helpers' exact outputs, and each policy's
probabilities on a four-candidate case small enough to write down."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from explore import (
    EpsilonGreedySlate,
    GreedySlate,
    PlackettLuceSlate,
    TopKRandomInsertion,
)
from explore.plackett_luce import log_sum_exp, pool_log_weights
from explore.policy import (
    _sampled_candidates,
    conditionals,
    exploring_mask,
    greedy_order,
    is_slate,
    slate_positions,
    top_order,
    validate_positions,
    validate_scores,
)
from explore.pool import pool_size

SCORES = np.array([0.9, 0.5, 0.7, 0.1])  # greedy order 0, 2, 1, 3


def test_params_are_logged_as_given() -> None:
    assert GreedySlate().params() == {}
    assert EpsilonGreedySlate().params() == {"epsilon": 0.1, "pool": None}
    assert TopKRandomInsertion(epsilon=0.2, pool=5, positions=(1, 2)).params() == {
        "epsilon": 0.2, "pool": 5, "positions": [1, 2],
    }  # fmt: skip
    assert PlackettLuceSlate().params() == {"temperature": 0.05, "pool": None, "uniform_mix": 0.0}
    assert (EpsilonGreedySlate().name, TopKRandomInsertion().name) == (
        "epsilon_greedy", "random_insertion",
    )  # fmt: skip
    assert (GreedySlate().name, PlackettLuceSlate().name) == ("greedy", "plackett_luce")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: EpsilonGreedySlate(epsilon=-0.1), r"epsilon must be in \[0, 1\]; got -0\.1"),
        (lambda: EpsilonGreedySlate(epsilon=1.5), r"epsilon must be in \[0, 1\]; got 1\.5"),
        (lambda: EpsilonGreedySlate(pool=0), r"pool must be None or >= 1; got 0"),
        (lambda: EpsilonGreedySlate(positions=()), r"positions must be None \(all\) or a "
         r"non-empty tuple; got \(\)"),
        (lambda: EpsilonGreedySlate(positions=(0, -1)), r"positions must be 0-based ints >= 0; "
         r"got -1 in \(0, -1\)"),
        (lambda: EpsilonGreedySlate(positions=(1.0,)), r"positions must be 0-based ints >= 0; "
         r"got 1\.0 in \(1\.0,\)"),
        (lambda: EpsilonGreedySlate(positions=(2, 0, 2)), r"positions must be distinct; "
         r"got \(2, 0, 2\)"),
        (lambda: PlackettLuceSlate(temperature=-1.0), r"temperature must be finite and > 0; "
         r"got -1\.0"),
        (lambda: PlackettLuceSlate(temperature=np.nan), r"temperature must be finite and > 0; "
         r"got nan"),
        (lambda: PlackettLuceSlate(pool=0), r"pool must be None or >= 1; got 0"),
        (lambda: PlackettLuceSlate(uniform_mix=-0.1), r"uniform_mix must be in \[0, 1\]; "
         r"got -0\.1"),
    ],
)  # fmt: skip
def test_bad_parameters_are_refused_with_their_message(make: object, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{message}$"):
        make()  # type: ignore[operator]


def test_edge_parameters_are_accepted() -> None:
    assert EpsilonGreedySlate(epsilon=0.0, pool=1, positions=(0,)).pool == 1
    assert EpsilonGreedySlate(epsilon=1.0, positions=(np.int64(2),)).epsilon == 1.0
    assert PlackettLuceSlate(uniform_mix=1.0, pool=1).uniform_mix == 1.0
    assert PlackettLuceSlate(uniform_mix=0.0, temperature=1e300).temperature == 1e300
    validate_positions(None)


@pytest.mark.parametrize(
    ("scores", "k", "message"),
    [
        (np.zeros((2, 2)), 1, r"scores must be a non-empty 1-D array; got shape \(2, 2\)"),
        (np.zeros(0), 1, r"scores must be a non-empty 1-D array; got shape \(0,\)"),
        (np.array([0.1, 0.2, np.inf]), 1, r"scores must be finite; got inf at index 2"),
        (np.array([-np.inf, 0.2]), 1, r"scores must be finite; got -inf at index 0"),
        (SCORES, 0, r"k must be >= 1; got 0"),
        (SCORES, -2, r"k must be >= 1; got -2"),
    ],
)
def test_validate_scores_messages(scores: np.ndarray, k: int, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{message}$"):
        validate_scores(scores, k)


@pytest.mark.filterwarnings("ignore:overflow encountered in dot:RuntimeWarning")
def test_validate_scores_accepts_huge_finite_scores_and_lists() -> None:
    scores = validate_scores(np.array([1e200, -1e200, 0.0]), 1)  # Σ s² overflows; all finite
    assert scores.dtype == np.float64
    np.testing.assert_array_equal(validate_scores([1, 2], 1), [1.0, 2.0])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("slate", "expected"),
    [
        ([0, 2], True),
        ([3], True),
        ([3, 2, 1, 0], True),
        ([], False),
        ([0, 4], False),
        ([-1, 0], False),
        ([1, 1], False),
        ([0, 1, 2, 3, 0], False),
    ],
)
def test_is_slate(slate: list[int], expected: bool) -> None:
    assert is_slate(np.array(slate, dtype=np.int64), 4) is expected


def test_is_slate_refuses_two_dimensions() -> None:
    assert not is_slate(np.array([[0, 1]]), 4)


def test_helpers_by_hand() -> None:
    np.testing.assert_allclose(conditionals(np.array([0.5, 0.25, 0.05])), [0.5, 0.5, 0.2])
    np.testing.assert_array_equal(exploring_mask((0, 5), 3), [True, False, False])
    np.testing.assert_array_equal(exploring_mask(None, 2), [True, True])
    np.testing.assert_array_equal(slate_positions(3), [0, 1, 2])
    assert not slate_positions(3).flags.writeable
    assert (pool_size(None, 9, 3), pool_size(2, 9, 3), pool_size(5, 9, 3), pool_size(20, 9, 3)) == (
        9, 3, 5, 9,
    )  # fmt: skip


@pytest.mark.parametrize(
    "policy",
    [GreedySlate(), EpsilonGreedySlate(epsilon=0.5), TopKRandomInsertion(epsilon=0.5),
     PlackettLuceSlate(temperature=0.5)],
    ids=["greedy", "epsilon_greedy", "random_insertion", "plackett_luce"],
)  # fmt: skip
def test_not_a_slate_has_probability_zero_and_k_is_capped_at_n(policy: object) -> None:
    for bad in ([0, 0], [0, 4], [-1], []):
        assert policy.slate_probability(SCORES, np.array(bad, dtype=np.int64)) == 0.0  # type: ignore[attr-defined]
    slate = policy.decide(SCORES, 9, np.random.default_rng(1))  # type: ignore[attr-defined]
    assert len(slate) == 4 and sorted(slate.indices) == [0, 1, 2, 3]
    assert policy.marginals(SCORES, 9).shape == (4, 4)  # type: ignore[attr-defined]


def test_greedy_by_hand() -> None:
    policy = GreedySlate()
    assert policy.slate_probability(SCORES, np.array([0, 2])) == 1.0
    assert policy.slate_probability(SCORES, np.array([2, 0])) == 0.0
    np.testing.assert_array_equal(policy.marginals(SCORES, 2), [[1, 0, 0, 0], [0, 0, 1, 0]])
    slate = policy.decide(SCORES, 2, np.random.default_rng(0))
    np.testing.assert_array_equal(slate.indices, [0, 2])
    np.testing.assert_array_equal(slate.scores, [0.9, 0.7])
    for column in (slate.propensity, slate.cond_propensity, slate.prefix_propensity):
        np.testing.assert_array_equal(column, [1.0, 1.0])
    assert slate.marginals_exact and not slate.explored.any()


def test_epsilon_greedy_by_hand() -> None:
    """ε = 0.2 over all four candidates, K = 2: 12 ordered slates, each explored with ε/12."""
    policy = EpsilonGreedySlate(epsilon=0.2)
    assert policy.slate_probability(SCORES, np.array([0, 2])) == pytest.approx(0.8 + 0.2 / 12)
    assert policy.slate_probability(SCORES, np.array([3, 1])) == pytest.approx(0.2 / 12)
    marginals = policy.marginals(SCORES, 2)
    np.testing.assert_allclose(marginals[0], [0.85, 0.05, 0.05, 0.05])
    np.testing.assert_allclose(marginals[1], [0.05, 0.05, 0.85, 0.05])
    np.testing.assert_allclose(policy.prefix_extensions(SCORES, np.array([0])),
                               [0, 0.2 / 12, 0.8 + 0.2 / 12, 0.2 / 12])  # fmt: skip
    np.testing.assert_allclose(policy.prefix_extensions(SCORES, np.array([], dtype=np.int64)),
                               [0.85, 0.05, 0.05, 0.05])  # fmt: skip
    # a prefix as long as the candidates leaves nothing to extend; a bad prefix has no extension
    np.testing.assert_array_equal(policy.prefix_extensions(SCORES, np.array([0, 1, 2, 3])), 0.0)
    np.testing.assert_array_equal(policy.prefix_extensions(SCORES, np.array([1, 1])), 0.0)


def test_epsilon_greedy_pool_and_fixed_position_by_hand() -> None:
    """pool 3 (candidates 0, 2, 1): candidate 3 is never explored. positions=(1,): position 0
    always shows 0; position 1 draws from the free pool {2, 1, 3} with ε/3."""
    pooled = EpsilonGreedySlate(epsilon=0.3, pool=3)
    assert pooled.slate_probability(SCORES, np.array([1, 0])) == pytest.approx(0.3 / 6)
    assert pooled.slate_probability(SCORES, np.array([3, 0])) == 0.0
    np.testing.assert_allclose(pooled.marginals(SCORES, 2)[0], [0.7 + 0.1, 0.1, 0.1, 0.0])
    fixed = EpsilonGreedySlate(epsilon=0.3, positions=(1,))
    assert fixed.slate_probability(SCORES, np.array([0, 1])) == pytest.approx(0.1)
    assert fixed.slate_probability(SCORES, np.array([0, 2])) == pytest.approx(0.7 + 0.1)
    assert fixed.slate_probability(SCORES, np.array([2, 0])) == 0.0
    np.testing.assert_allclose(fixed.marginals(SCORES, 2), [[1, 0, 0, 0], [0, 0.1, 0.8, 0.1]])
    np.testing.assert_allclose(fixed.prefix_extensions(SCORES, np.array([], dtype=np.int64)),
                               [1, 0, 0, 0])  # fmt: skip
    np.testing.assert_allclose(fixed.prefix_extensions(SCORES, np.array([0])), [0, 0.1, 0.8, 0.1])
    rng = np.random.default_rng(3)
    for _ in range(50):
        slate = fixed.decide(SCORES, 2, rng)
        assert slate.indices[0] == 0 and slate.propensity[0] == 1.0
        assert slate.propensity[1] == pytest.approx(0.8 if slate.indices[1] == 2 else 0.1)
        assert slate.prefix_propensity[1] == pytest.approx(
            fixed.slate_probability(SCORES, slate.indices)
        )
        assert slate.explored[1] == (slate.indices[1] != 2)


def test_random_insertion_by_hand() -> None:
    """ε = 0.6, K = 2 over four candidates: B = {1, 3}, two insertion positions."""
    policy = TopKRandomInsertion(epsilon=0.6)
    assert policy.slate_probability(SCORES, np.array([0, 2])) == pytest.approx(0.4)
    assert policy.slate_probability(SCORES, np.array([3, 0])) == pytest.approx(0.6 / 4)
    assert policy.slate_probability(SCORES, np.array([0, 1])) == pytest.approx(0.6 / 4)
    assert policy.slate_probability(SCORES, np.array([3, 2])) == 0.0  # g_0 must move down
    assert policy.slate_probability(SCORES, np.array([2, 0])) == 0.0  # 2 is not beyond the top K
    np.testing.assert_allclose(
        policy.marginals(SCORES, 2), [[0.7, 0.15, 0.0, 0.15], [0.3, 0.15, 0.4, 0.15]]
    )
    rng = np.random.default_rng(5)
    seen = set()
    for _ in range(60):
        slate = policy.decide(SCORES, 2, rng)
        seen.add(tuple(slate.indices))
        assert slate.prefix_propensity[-1] == pytest.approx(
            policy.slate_probability(SCORES, slate.indices)
        )
        np.testing.assert_allclose(
            slate.propensity, policy.marginals(SCORES, 2)[[0, 1], slate.indices]
        )
    assert seen == {(0, 2), (1, 0), (3, 0), (0, 1), (0, 3)}


def test_random_insertion_at_one_position_only() -> None:
    policy = TopKRandomInsertion(epsilon=0.5, positions=(1,))
    assert policy.slate_probability(SCORES, np.array([0, 2])) == pytest.approx(0.5)
    assert policy.slate_probability(SCORES, np.array([0, 3])) == pytest.approx(0.25)
    assert policy.slate_probability(SCORES, np.array([3, 0])) == 0.0  # position 0 never inserts
    np.testing.assert_allclose(policy.marginals(SCORES, 2), [[1.0, 0, 0, 0], [0, 0.25, 0.5, 0.25]])
    rng = np.random.default_rng(8)
    for _ in range(30):
        slate = policy.decide(SCORES, 2, rng)
        np.testing.assert_allclose(
            slate.propensity, policy.marginals(SCORES, 2)[[0, 1], slate.indices]
        )
        assert slate.prefix_propensity[-1] == pytest.approx(
            policy.slate_probability(SCORES, slate.indices)
        )


def test_random_insertion_with_nowhere_to_insert_is_greedy() -> None:
    # the only insertion position lies beyond the slate; or the pool holds only the top K
    for policy in (
        TopKRandomInsertion(epsilon=1.0, positions=(3,)),
        TopKRandomInsertion(epsilon=0.5, pool=2),
    ):
        slate = policy.decide(SCORES, 2, np.random.default_rng(0))
        np.testing.assert_array_equal(slate.indices, [0, 2])
        np.testing.assert_array_equal(slate.prefix_propensity, [1.0, 1.0])
        assert policy.slate_probability(SCORES, np.array([0, 2])) == 1.0
        assert policy.slate_probability(SCORES, np.array([1, 0])) == 0.0
        assert policy.slate_probability(SCORES, np.array([0, 1])) == 0.0


def test_plackett_luce_by_hand() -> None:
    """T = 1: P(a, b) = e^{s_a}/Σ e^{s} · e^{s_b}/(Σ e^{s} − e^{s_a})."""
    policy = PlackettLuceSlate(temperature=1.0)
    e = np.exp(SCORES)
    assert policy.slate_probability(SCORES, np.array([3, 1])) == pytest.approx(
        e[3] / e.sum() * e[1] / (e.sum() - e[3]), rel=1e-13
    )
    np.testing.assert_allclose(policy.marginals(SCORES, 1)[0], e / e.sum(), rtol=1e-13)
    mixed = PlackettLuceSlate(temperature=1.0, uniform_mix=0.4)
    first = 0.6 * e[3] / e.sum() + 0.4 / 4
    second = 0.6 * e[1] / (e.sum() - e[3]) + 0.4 / 3
    assert mixed.slate_probability(SCORES, np.array([3, 1])) == pytest.approx(
        first * second, rel=1e-13
    )
    np.testing.assert_allclose(mixed.marginals(SCORES, 1)[0], 0.6 * e / e.sum() + 0.1, rtol=1e-13)
    pooled = PlackettLuceSlate(temperature=1.0, pool=2)  # candidates 0 and 2 only
    assert pooled.slate_probability(SCORES, np.array([1])) == 0.0
    assert pooled.slate_probability(SCORES, np.array([2])) == pytest.approx(
        e[2] / (e[0] + e[2]), rel=1e-13
    )


ALL = [
    GreedySlate(),
    EpsilonGreedySlate(epsilon=0.5),
    TopKRandomInsertion(epsilon=0.5),
    PlackettLuceSlate(temperature=0.5),
]
ALL_IDS = ["greedy", "epsilon_greedy", "random_insertion", "plackett_luce"]


@pytest.mark.parametrize("policy", ALL, ids=ALL_IDS)
def test_decide_ranked_logs_the_exploration_it_is_given(policy: object) -> None:
    rng = np.random.default_rng(2)
    for _ in range(20):  # both branches of the exploring policies
        slate = policy.decide_ranked(  # type: ignore[attr-defined]
            SCORES, top_order(SCORES, 4), 2, rng, exploration={"epsilon": 0.5}
        )
        assert slate.exploration == {"epsilon": 0.5}
        assert slate.explored.dtype == np.bool_
    assert policy.decide(SCORES, 2, rng).exploration is None  # type: ignore[attr-defined]


@pytest.mark.parametrize("policy", ALL, ids=ALL_IDS)
def test_slates_given_as_floats_are_read_as_indices(policy: object) -> None:
    # a slate read back from a frame with missing values comes as floats
    for slate in ([0, 2], [2, 1], [3]):
        as_float = np.array(slate, dtype=np.float64)
        assert policy.slate_probability(SCORES, as_float) == policy.slate_probability(  # type: ignore[attr-defined]
            SCORES, np.array(slate)
        )


def test_epsilon_greedy_extends_a_prefix_of_all_but_one_candidate() -> None:
    policy = EpsilonGreedySlate(epsilon=0.2)
    prefix = np.array([0, 2, 1])  # the greedy prefix: only candidate 3 is left
    expected = policy.slate_probability(SCORES, np.array([0, 2, 1, 3]))
    assert expected == pytest.approx(0.8 + 0.2 / 24)
    np.testing.assert_allclose(policy.prefix_extensions(SCORES, prefix), [0, 0, 0, expected])
    np.testing.assert_allclose(
        policy.prefix_extensions(SCORES, prefix.astype(np.float64)), [0, 0, 0, expected]
    )


@pytest.mark.parametrize(
    ("policy", "k"),
    [
        (PlackettLuceSlate(temperature=0.5), 1),
        (PlackettLuceSlate(temperature=0.5, uniform_mix=0.4), 2),  # a race past uniform picks
        (PlackettLuceSlate(temperature=0.3, pool=3, uniform_mix=0.5), 2),
        (PlackettLuceSlate(temperature=0.5, uniform_mix=0.3), 4),  # every candidate shown
    ],
    ids=["top-1", "mix", "pool-3", "whole-pool"],
)
def test_plackett_luce_draws_each_slate_as_often_as_it_logs(policy: object, k: int) -> None:
    """4,000 draws on four candidates: every slate's count within 4.5 standard errors of its
    slate probability, and the probabilities of all slates sum to 1."""
    n = 4_000
    rng = np.random.default_rng(17)
    counts: dict[tuple[int, ...], int] = {}
    for _ in range(n):
        slate = tuple(int(i) for i in policy.decide(SCORES, k, rng).indices)  # type: ignore[attr-defined]
        counts[slate] = counts.get(slate, 0) + 1
    total = 0.0
    for slate in itertools.permutations(range(4), k):
        p = policy.slate_probability(SCORES, np.array(slate))  # type: ignore[attr-defined]
        total += p
        se = max(np.sqrt(p * (1 - p) / n), 1e-3)
        assert abs(counts.get(slate, 0) / n - p) < 4.5 * se, slate
    assert total == pytest.approx(1.0, abs=1e-12)


def test_plackett_luce_exact_marginals_over_the_whole_pool() -> None:
    policy = PlackettLuceSlate(temperature=0.5, uniform_mix=0.3)
    enumerated = np.zeros((4, 4))
    for slate in itertools.permutations(range(4), 4):
        enumerated[np.arange(4), list(slate)] += policy.slate_probability(SCORES, np.array(slate))
    np.testing.assert_allclose(policy.marginals(SCORES, 4), enumerated, atol=1e-14)
    assert policy.marginals(np.array([0.3]), 1).tolist() == [[1.0]]


def test_plackett_luce_temperature_divides_the_scores() -> None:
    """T = 0.5: weights e^{2 s}."""
    e = np.exp(SCORES / 0.5)
    policy = PlackettLuceSlate(temperature=0.5)
    assert policy.slate_probability(SCORES, np.array([1, 3])) == pytest.approx(
        e[1] / e.sum() * e[3] / (e.sum() - e[1]), rel=1e-13
    )
    np.testing.assert_allclose(pool_log_weights(np.array([0.5, 0.3, 0.6]), 0.1), [-1, -3, 0])


def test_log_sum_exp_by_hand() -> None:
    assert log_sum_exp(np.array([])) == -np.inf
    assert log_sum_exp(np.array([5.0])) == 5.0
    assert log_sum_exp(np.array([1000.0, 1000.0])) == pytest.approx(1000 + np.log(2), rel=1e-15)
    assert log_sum_exp(np.array([0.0, np.log(3.0)])) == pytest.approx(np.log(4.0), rel=1e-15)


def test_plackett_luce_marginals_up_to_a_pool_of_14() -> None:
    scores = np.linspace(0.0, 1.0, 20)
    policy = PlackettLuceSlate(temperature=0.3, pool=14)
    marginals = policy.marginals(scores, 2)
    np.testing.assert_allclose(marginals.sum(axis=1), [1.0, 1.0], rtol=1e-12)
    assert marginals[:, :6].sum() == 0.0  # outside the pool of the top 14
    message = (
        "Plackett-Luce marginals are exact only for k = 1 or a pool of at most 14 candidates; "
        "got k = 2 and a pool of 15 (use slate_probability or the prefix propensities instead)"
    )
    with pytest.raises(ValueError) as info:
        PlackettLuceSlate(temperature=0.3, pool=15).marginals(scores, 2)
    assert str(info.value) == message


def test_the_sampled_threshold_keeps_the_top_m_and_at_most_half() -> None:
    """``top_order``'s shortcut, on its own: on typical scores it returns a candidate set (not
    None, which would send every request to the full partition) that holds the whole top m and
    at most half of the candidates."""
    rng = np.random.default_rng(6)
    for n, m in ((3000, 20), (1000, 7), (400, 50)):
        scores = rng.random(n)
        top = _sampled_candidates(scores, m)
        assert top is not None
        assert m <= top.size <= n // 2
        assert set(greedy_order(scores)[:m]) <= set(top.tolist())
        np.testing.assert_array_equal(top, np.sort(top))
    assert validate_scores(np.array([1, 2]), 1).dtype == np.float64


def test_plackett_luce_cold_draws_the_top_of_a_large_pool() -> None:
    """T = 1e-5 over 1,000 scores 0.001 apart: the top candidate outweighs the rest by e^100, so
    a single-position slate shows it every time, and logs that it did."""
    scores = np.linspace(0.0, 1.0, 1000)
    policy = PlackettLuceSlate(temperature=1e-5)
    rng = np.random.default_rng(4)
    for _ in range(20):
        slate = policy.decide(scores, 1, rng)
        assert slate.indices.tolist() == [999]
        assert slate.propensity[0] == pytest.approx(1.0)
