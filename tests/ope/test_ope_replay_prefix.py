"""``ope.replay.prefix_conditionals``: the target's choice at each logged position given the
logged items above it equals brute-force enumeration of whole slates for explore's policies, sums
to 1 where the prefix is possible, is empty where it is not, and a policy whose shorter slates do
not give prefix probabilities is refused."""

from __future__ import annotations

import numpy as np
import pytest

from explore import EpsilonGreedySlate, GreedySlate, PlackettLuceSlate
from ope.pseudo_inverse import slate_distribution
from ope.replay import prefix_conditionals

SCORES = np.array([0.31, 0.72, 0.15, 0.55, 0.9, 0.4])
K = 3

POLICIES = {
    "epsilon-greedy": EpsilonGreedySlate(epsilon=0.3),
    "epsilon-greedy pool 4": EpsilonGreedySlate(epsilon=0.6, pool=4),
    "epsilon-greedy lower positions": EpsilonGreedySlate(epsilon=0.5, positions=(1, 2)),
    "plackett-luce": PlackettLuceSlate(temperature=0.2),
    "plackett-luce pool 5 mixed": PlackettLuceSlate(temperature=0.1, pool=5, uniform_mix=0.2),
    "greedy": GreedySlate(),
}


def brute_force(
    slates: np.ndarray, probability: np.ndarray, logged: np.ndarray
) -> list[dict[int, float]]:
    """Per position j: {a: P(s_j = a | s_1..s_{j-1} = logged's)} from whole-slate probabilities
    (empty where the logged prefix has probability 0)."""
    out = []
    for j in range(logged.size):
        same_prefix = np.all(slates[:, :j] == logged[:j], axis=1)
        mass = probability[same_prefix].sum()
        if mass == 0.0:
            out.append({})
            continue
        choice: dict[int, float] = {}
        for slate, p in zip(slates[same_prefix], probability[same_prefix], strict=True):
            choice[int(slate[j])] = choice.get(int(slate[j]), 0.0) + p / mass
        out.append({a: p for a, p in choice.items() if p > 0.0})
    return out


@pytest.mark.parametrize("name", list(POLICIES))
def test_conditionals_equal_brute_force_enumeration_over_every_logged_slate(name: str) -> None:
    policy = POLICIES[name]
    slates, probability = slate_distribution(policy, SCORES, K)
    possible = impossible = 0
    for logged in slates:
        got = prefix_conditionals(policy, SCORES, logged)
        expected = brute_force(slates, probability, logged)
        assert len(got) == K
        for position, ((candidates, conditional), want) in enumerate(
            zip(got, expected, strict=True)
        ):
            keep = conditional > 0.0
            assert dict(zip(candidates[keep].tolist(), conditional[keep], strict=True)) == (
                pytest.approx(want, abs=1e-12)
            ), (name, logged, position)
            if want:
                possible += 1
                assert conditional.sum() == pytest.approx(1.0, abs=1e-12)
                assert not np.isin(candidates, logged[:position]).any()
            else:
                impossible += 1
                assert candidates.size == 0 and conditional.size == 0
    assert possible > 0
    if name == "greedy":
        assert impossible > 0  # most logged prefixes are impossible under the greedy target


def test_the_first_position_is_the_marginal_and_an_impossible_prefix_is_empty() -> None:
    policy = EpsilonGreedySlate(epsilon=0.6, pool=4)
    marginals = policy.marginals(SCORES, K)
    outside_pool = int(np.argsort(-SCORES)[-1])  # never explored: not in the top 4
    logged = np.array([outside_pool, 4, 1])
    got = prefix_conditionals(policy, SCORES, logged)
    candidates, conditional = got[0]
    np.testing.assert_allclose(conditional, marginals[0, candidates], rtol=0, atol=1e-15)
    assert set(candidates.tolist()) == set(np.flatnonzero(marginals[0] > 0).tolist())
    assert all(c.size == 0 and p.size == 0 for c, p in got[1:])


def test_a_policy_whose_shorter_slates_are_not_prefixes_is_refused() -> None:
    """ε-greedy with a pool smaller than K explores the top K for a K-slate but only the top 2
    for a one-item slate, so its shorter slates' probabilities are not prefix probabilities."""
    policy = EpsilonGreedySlate(epsilon=0.5, pool=2)
    logged = np.argsort(-SCORES)[:K]
    with pytest.raises(ValueError, match=r"conditionals at position 2 sum to .* not 1"):
        prefix_conditionals(policy, SCORES, logged)


@pytest.mark.parametrize(
    ("logged", "match"),
    [([0, 9, 1], "names candidate 9 of only 6 scores"), ([-1, 2], "did not have")],
)
def test_a_logged_slate_outside_the_candidates_is_refused(logged: list[int], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        prefix_conditionals(GreedySlate(), SCORES, logged)
