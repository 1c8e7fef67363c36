"""Every exploration policy samples what it logs: 100,000 decisions per policy on fixed scores.

- Per position (over items) and per item (over positions, plus "not shown"), the sampled counts
  match the logged propensities by a chi-square test at α = 0.01 for each policy (Bonferroni
  over that policy's tests), and the largest |z| over all (position, item) cells stays below 4.5.
- The logged marginal of a (position, item) cell is the same in every decision that shows it and
  equals ``marginals``; where a policy logs NaN (Plackett-Luce), ``marginals`` is its exact
  subset dynamic program, checked here against the samples.
- Whole slates: their counts match ``slate_probability`` (chi-square, rare slates pooled), and
  the logged prefix propensity of every sampled slate equals it exactly.

A calibrated policy decides with one of these families and the parameters it picked, so it is
covered here through them, and by enumeration in ``test_explore_budget``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pytest
from scipy.stats import chisquare

from explore import (
    EpsilonGreedySlate,
    GreedySlate,
    PlackettLuceSlate,
    Policy,
    TopKRandomInsertion,
)

N_DECISIONS = 100_000
SCORES = np.array([0.12, 0.55, 0.31, 0.9, 0.05, 0.47, 0.72, 0.2])
K = 3
ALPHA = 0.01
MAX_ABS_Z = 4.5

pytestmark = pytest.mark.slow

POLICIES: dict[str, Policy] = {
    "epsilon_greedy_positions": EpsilonGreedySlate(epsilon=0.4, pool=6, positions=(1, 2)),
    "random_insertion": TopKRandomInsertion(epsilon=0.6, pool=7),
    "plackett_luce": PlackettLuceSlate(temperature=0.2),
    "plackett_luce_uniform_mix": PlackettLuceSlate(temperature=0.1, pool=7, uniform_mix=0.3),
}


@dataclass(frozen=True)
class Sample:
    policy: Policy
    indices: np.ndarray  # (N, K)
    propensity: np.ndarray  # (N, K), NaN where the marginal is not exact
    probability: np.ndarray  # (N,) logged prefix propensity of the whole slate
    marginals: np.ndarray  # (K, n) from the policy


@pytest.fixture(scope="module", params=list(POLICIES))
def sample(request: pytest.FixtureRequest) -> Sample:
    policy = POLICIES[request.param]
    rng = np.random.default_rng(20240611)
    indices = np.empty((N_DECISIONS, K), dtype=np.int64)
    propensity = np.empty((N_DECISIONS, K))
    probability = np.empty(N_DECISIONS)
    for t in range(N_DECISIONS):
        slate = policy.decide(SCORES, K, rng)
        indices[t] = slate.indices
        propensity[t] = slate.propensity
        probability[t] = slate.prefix_propensity[-1]
    return Sample(policy, indices, propensity, probability, policy.marginals(SCORES, K))


def _counts(sample: Sample) -> np.ndarray:
    counts = np.zeros((K, SCORES.size))
    for k in range(K):
        counts[k] = np.bincount(sample.indices[:, k], minlength=SCORES.size)
    return counts


def test_logged_marginals_are_one_value_per_cell_and_equal_marginals(sample: Sample) -> None:
    if np.isnan(sample.propensity).all():
        assert isinstance(sample.policy, PlackettLuceSlate)
        return
    assert not np.isnan(sample.propensity).any()
    for k in range(K):
        for item in np.unique(sample.indices[:, k]):
            logged = np.unique(sample.propensity[sample.indices[:, k] == item, k])
            assert logged.size == 1, (k, item, logged)
            assert logged[0] == pytest.approx(sample.marginals[k, item], rel=1e-12)


def test_counts_per_position_and_per_item_match_the_propensities(sample: Sample) -> None:
    counts = _counts(sample)
    expected = N_DECISIONS * sample.marginals
    support = sample.marginals > 0
    assert np.all(counts[~support] == 0), "a candidate was shown where its propensity is 0"
    n_tests = K + SCORES.size
    p_values = []
    for k in range(K):
        cells = support[k]
        if cells.sum() > 1:
            p_values.append(chisquare(counts[k, cells], expected[k, cells]).pvalue)
    shown = sample.marginals.sum(axis=0)
    for item in range(SCORES.size):
        observed = np.append(counts[:, item], N_DECISIONS - counts[:, item].sum())
        wanted = np.append(expected[:, item], N_DECISIONS * (1.0 - shown[item]))
        cells = wanted > 1e-9
        if cells.sum() > 1:
            p_values.append(chisquare(observed[cells], wanted[cells]).pvalue)
    z = (counts - expected)[support] / np.sqrt(
        (expected * (1.0 - sample.marginals))[support].clip(min=1e-12)
    )
    max_abs_z = float(np.max(np.abs(z)))
    assert min(p_values) > ALPHA / n_tests, (p_values, max_abs_z)
    assert max_abs_z < MAX_ABS_Z, max_abs_z


def test_whole_slate_frequencies_match_slate_probability(sample: Sample) -> None:
    slates = list(itertools.permutations(range(SCORES.size), K))
    probability = np.array([sample.policy.slate_probability(SCORES, np.array(s)) for s in slates])
    assert probability.sum() == pytest.approx(1.0, abs=1e-12)
    code = {s: j for j, s in enumerate(slates)}
    drawn = np.array([code[tuple(row)] for row in sample.indices.tolist()])
    # The logged probability of every sampled slate is exactly slate_probability.
    np.testing.assert_allclose(sample.probability, probability[drawn], rtol=1e-12, atol=0)
    counts = np.bincount(drawn, minlength=len(slates)).astype(np.float64)
    expected = N_DECISIONS * probability
    assert np.all(counts[probability == 0] == 0)
    common = expected >= 5.0
    rare = (probability > 0) & ~common
    observed = np.append(counts[common], counts[rare].sum())
    wanted = np.append(expected[common], expected[rare].sum())
    keep = wanted > 0
    assert chisquare(observed[keep], wanted[keep]).pvalue > ALPHA


def test_greedy_always_shows_the_top_k_with_propensity_one() -> None:
    policy = GreedySlate()
    rng = np.random.default_rng(0)
    for _ in range(1000):
        slate = policy.decide(SCORES, K, rng)
        np.testing.assert_array_equal(slate.indices, [3, 6, 1])
        np.testing.assert_array_equal(slate.prefix_propensity, 1.0)
