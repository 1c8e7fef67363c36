"""The pseudo-inverse estimator on three decisions small enough to weigh by hand (uniform logging
of two slots out of a pool of three), its Bernstein bound's range, each message that says why a
log is not uniform, and the enumeration's limits."""

from __future__ import annotations

import math

import numpy as np
import pytest

from explore import EpsilonGreedySlate, GreedySlate
from ope import OpeBatch, OpeInputError, PseudoInverse
from ope.estimators import Bounds
from ope.pseudo_inverse import (
    ordered_slates,
    pairwise_marginals,
    position_marginals,
    pseudo_inverse_weights,
    slate_distribution,
    uniform_pool_sizes,
)

# Pool M = 3, K = 2: pscore 1/3, pscore_slate 1/6, w(s) = 2 Σ q + 2 Σ Q − 3.
Q = [0.5, 0.25, 0.0, 0.5, 1.0, 1.0]  # the target's probability of each row's item at its slot
Q_ITEM = [0.75, 0.5, 0.25, 0.5, 1.0, 1.0]  # ... at any slot
REWARD = [1.0, 0.0, 1.0, 1.0, 0.0, 1.0]
# decision weights 1, −0.5, 5; terms w Σ r = 1, −1, 5
TERMS = np.array([1.0, -1.0, 5.0])


def columns(**changes: object) -> dict[str, object]:
    out: dict[str, object] = {
        "reward": REWARD,
        "pscore": [1 / 3] * 6,
        "target_pscore": Q,
        "decision_id": [0, 0, 1, 1, 2, 2],
        "slot": [0, 1, 0, 1, 0, 1],
        "pscore_slate": [1 / 6] * 6,
        "target_pscore_item": Q_ITEM,
    }
    out.update(changes)
    return out


def batch(**changes: object) -> OpeBatch:
    c = columns(**changes)
    slate = {
        "pscore_slate": c.pop("pscore_slate"),
        "target_pscore_slate": [0.1] * len(c["reward"]),  # type: ignore[arg-type]
        "target_pscore_item": c.pop("target_pscore_item"),
    }
    return OpeBatch.from_arrays(**c, slate_pscores=slate)  # type: ignore[arg-type]


def bernstein_half(variance: float, n: int, term_range: float, alpha: float = 0.05) -> float:
    log_term = math.log(4.0 / alpha)
    return math.sqrt(2 * variance * log_term / n) + 7 * term_range * log_term / (3 * (n - 1))


def test_value_by_hand() -> None:
    estimate = PseudoInverse().estimate(batch())
    assert estimate.value == pytest.approx(5 / 3, rel=1e-12)
    np.testing.assert_allclose(PseudoInverse()._weight(batch()), [1, 1, -0.5, -0.5, 5, 5])


def test_a_full_pool_weighs_by_the_position_marginals_alone() -> None:
    # M = K = 2: w(s) = (M − 1) Σ q − (M − 2) = Σ q
    full = batch(
        reward=[1.0, 1.0], pscore=[0.5, 0.5], target_pscore=[0.25, 0.5], decision_id=[0, 0],
        slot=[0, 1], pscore_slate=[0.5, 0.5], target_pscore_item=[1.0, 1.0],
    )  # fmt: skip
    assert PseudoInverse().estimate(full).value == pytest.approx(0.75 * 2, rel=1e-12)


@pytest.mark.parametrize(
    ("bounds", "span"),
    [
        # weights in [−(K² − 1), K (M − 1) + 1] = [−3, 5], a decision's reward in [0, 2]
        (Bounds(), 16.0),
        # rewards in [−1, 2]: a decision's in [−2, 4]; products −12 .. 20
        (Bounds(reward_min=-1.0, reward_max=2.0), 32.0),
        # rewards in [0.5, 3]: [1, 6]; products −18 .. 30
        (Bounds(reward_min=0.0, reward_max=3.0, weight_max=1.0), 48.0),
    ],
)
def test_bernstein_range_from_slots_and_pool(bounds: Bounds, span: float) -> None:
    estimate = PseudoInverse().estimate(batch(), interval="bernstein", bounds=bounds)
    half = bernstein_half(float(np.var(TERMS, ddof=1)), 3, span)
    value = TERMS.mean()
    assert (estimate.lo, estimate.hi) == pytest.approx((value - half, value + half), rel=1e-12)


def test_bernstein_refuses_rewards_outside_its_bounds() -> None:
    message = (
        r"^rewards lie in \[0\.0, 1\.0\], outside the bounds \[0\.0, 0\.5\] the Bernstein "
        r"interval assumes$"
    )
    with pytest.raises(ValueError, match=message):
        PseudoInverse().estimate(batch(), interval="bernstein", bounds=Bounds(reward_max=0.5))
    with pytest.raises(
        ValueError, match=r"^rewards lie in \[0\.0, 1\.0\], outside the bounds \[0\.5"
    ):
        PseudoInverse().estimate(
            batch(), interval="bernstein", bounds=Bounds(reward_min=0.5, reward_max=2.0)
        )


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"pscore": [1 / 3] * 5 + [0.3]}, "pscore 0.3 at row 5 is not 1/M for a whole pool size M"),
        ({"pscore": [1 / 3] * 4 + [0.25] * 2, "pscore_slate": [1 / 6] * 5 + [1 / 12],
          "decision_id": [0, 0, 1, 1, 1, 2]},
         "pscore differs within the decision of row 2"),
        ({"slot": [0, 1, 0, 2, 0, 1]},
         "row 3 has slot 2 with 2 rows in its decision and pool size 3: every slot 0..K-1 must "
         "be a row, K <= M"),
        ({"pscore": [1 / 3] * 2 + [0.5] * 4, "decision_id": [0, 0, 1, 1, 1, 1],
          "slot": [0, 1, 0, 1, 2, 3], "pscore_slate": [1 / 6] * 2 + [0.5] * 4},
         "row 2 has slot 0 with 4 rows in its decision and pool size 2: every slot 0..K-1 must "
         "be a row, K <= M"),
        ({"slot": [0, 1, 1, 1, 0, 1]}, "a decision has two rows at the same slot"),
        ({"pscore_slate": [1 / 6] * 4 + [0.9] * 2},
         "pscore_slate 0.9 at row 4 is not (M - K)!/M! for M = 3, K = 2"),
        ({"pscore_slate": [1 / 6] * 2 + [1 / 6 * 1.01] * 2 + [1 / 6] * 2},
         f"pscore_slate {1 / 6 * 1.01} at row 2 is not (M - K)!/M! for M = 3, K = 2"),
    ],
)  # fmt: skip
def test_why_a_log_is_not_uniform(changes: dict, message: str) -> None:
    logged = batch(**changes)
    assert uniform_pool_sizes(logged) == message
    assert not PseudoInverse().supports(logged)
    with pytest.raises(OpeInputError, match=r"^pi needs uniform logging without replacement: "):
        PseudoInverse()._weight(logged)


def test_pool_sizes_tolerate_rounding_in_the_logged_marginal() -> None:
    sizes = uniform_pool_sizes(batch(pscore=[1 / (3 + 2e-9)] * 6))
    assert not isinstance(sizes, str)
    np.testing.assert_array_equal(sizes[0], [3, 3, 3])
    np.testing.assert_array_equal(sizes[1], [2, 2, 2])
    bare = OpeBatch.from_arrays(reward=[1.0], pscore=[0.5], target_pscore=[0.5])
    assert uniform_pool_sizes(bare) == "the input lacks pscore_slate"


def test_target_item_probability_below_the_position_one_is_named() -> None:
    message = r"^target_pscore_item must be at least target_pscore; got 0\.2 < 0\.25 at row 1$"
    with pytest.raises(OpeInputError, match=message):
        PseudoInverse().estimate(batch(target_pscore_item=[0.75, 0.2, 0.25, 0.5, 1.0, 1.0]))
    # equal is allowed: the item can only be shown where it is
    equal = batch(target_pscore_item=Q)
    assert math.isfinite(PseudoInverse().estimate(equal).value)


def test_direct_weight_call_without_the_item_column_is_refused() -> None:
    logged = OpeBatch.from_arrays(
        reward=[1.0, 0.0], pscore=[1 / 3, 1 / 3], target_pscore=[0.5, 0.5], decision_id=[0, 0],
        slot=[0, 1], slate_pscores={"pscore_slate": [1 / 6] * 2, "target_pscore_slate": [0.1] * 2},
    )  # fmt: skip
    with pytest.raises(ValueError, match=r"^the batch has no target_pscore_item$"):
        PseudoInverse()._weight(logged)


def test_enumeration_limits() -> None:
    assert ordered_slates(3, 3).shape == (6, 3)
    assert ordered_slates(8, 1).shape == (8, 1)
    np.testing.assert_array_equal(ordered_slates(3, 2)[:3], [[0, 1], [0, 2], [1, 0]])
    for n, k in ((9, 1), (3, 4), (3, 0)):
        message = rf"^need 1 <= k <= n <= 8 to enumerate slates; got n={n}, k={k}$"
        with pytest.raises(ValueError, match=message):
            ordered_slates(n, k)


class HalfOfGreedy:
    """Puts half the probability of the greedy policy on each slate: sums to 0.5."""

    def slate_probability(self, scores: np.ndarray, slate: np.ndarray) -> float:
        return 0.5 * GreedySlate().slate_probability(scores, slate)


def test_slate_distribution_refuses_probabilities_that_do_not_sum_to_one() -> None:
    with pytest.raises(ValueError, match=r"^the policy's slate probabilities sum to 0\.5, not 1$"):
        slate_distribution(HalfOfGreedy(), np.array([0.3, 0.1, 0.2]), 2)
    slates, probabilities = slate_distribution(GreedySlate(), np.array([0.3, 0.1, 0.2]), 2)
    assert probabilities.sum() == 1.0
    np.testing.assert_array_equal(slates[probabilities == 1.0], [[0, 2]])


def test_pairwise_marginals_below_the_cutoff_count_as_no_support() -> None:
    """A logging policy that explores with ε = 1e-13 leaves the other candidates 1e-13 of the
    greedy one's probability: below Γ's relative cutoff of 1e-10 they are outside its support,
    weight 0, rather than weights of 1e13 that no log could estimate with."""
    scores = np.array([0.9, 0.5, 0.1])
    slates, logging = slate_distribution(EpsilonGreedySlate(epsilon=1e-13), scores, 1)
    gamma = pairwise_marginals(slates, logging, 3)
    target_slates, target = slate_distribution(EpsilonGreedySlate(epsilon=1.0), scores, 1)
    q = position_marginals(target_slates, target, 3)
    weights = pseudo_inverse_weights(gamma, q, slates, 3)
    np.testing.assert_allclose(weights, [1 / 3, 0.0, 0.0], atol=1e-12)
