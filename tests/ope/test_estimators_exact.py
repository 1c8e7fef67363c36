"""The estimators on logs small enough to compute by hand: IPS, SNIPS, SNDR and clipped IPS,
value and interval endpoints, with one row per decision and one or several slots, several rows
per decision, Bernstein's term range under bounds other than [0, 1] and its weight tolerance,
and the messages of every refusal."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ope import IPS, SNDR, SNIPS, Bounds, ClippedIPS, Estimate, OpeBatch
from ope.estimators import (
    Estimator,
    Partial,
    check_hyperparameter,
    per_decision_slot,
    self_normalized_gradient,
    self_normalized_value,
    weighted_reward_range,
)
from ope.slate import SlateStandardIPS

Z_975 = 1.959963984540054


def se_of(terms: np.ndarray) -> float:
    """Standard error of a mean of per-decision terms (sample variance, ddof 1)."""
    return float(np.std(terms, ddof=1) / math.sqrt(terms.size))


def bernstein_half(variance: float, n: int, term_range: float, alpha: float = 0.05) -> float:
    log_term = math.log(4.0 / alpha)
    return math.sqrt(2 * variance * log_term / n) + 7 * term_range * log_term / (3 * (n - 1))


# Four decisions, one slot: weights 0.5, 2, 2, 0.5; IPS terms w r = 0.5, 0, 2, 0.25.
SMALL = {
    "reward": [1.0, 0.0, 1.0, 0.5],
    "pscore": [0.5, 0.25, 0.5, 1.0],
    "target_pscore": [0.25, 0.5, 1.0, 0.5],
}
SMALL_TERMS = np.array([0.5, 0.0, 2.0, 0.25])


def small() -> OpeBatch:
    return OpeBatch.from_arrays(**SMALL)


def test_ips_value_and_normal_interval_by_hand() -> None:
    estimate = IPS().estimate(small())
    assert estimate.value == pytest.approx(0.6875, rel=1e-12)
    half = Z_975 * se_of(SMALL_TERMS)
    assert (estimate.lo, estimate.hi) == pytest.approx((0.6875 - half, 0.6875 + half), rel=1e-12)
    assert estimate.n_decisions == 4
    assert estimate.interval == "normal"


def test_ips_bernstein_takes_the_weight_bound_from_the_smallest_pscore() -> None:
    # weight_max = 1 / 0.25 = 4, rewards in [0, 1]: terms span [0, 4]
    estimate = IPS().estimate(small(), interval="bernstein")
    half = bernstein_half(float(np.var(SMALL_TERMS, ddof=1)), 4, 4.0)
    assert (estimate.lo, estimate.hi) == pytest.approx((0.6875 - half, 0.6875 + half), rel=1e-12)
    assert estimate.interval == "bernstein"


def test_ips_bernstein_range_with_negative_rewards_and_two_slots() -> None:
    # two decisions of two slots and one of one; rewards in [-1, 2], weights <= 3
    batch = OpeBatch.from_arrays(
        reward=[-1.0, 2.0, 0.5, 1.0, -0.5],
        pscore=[0.5, 0.5, 0.5, 0.5, 0.5],
        target_pscore=[0.5, 1.0, 0.25, 0.5, 1.0],
        decision_id=[0, 0, 1, 1, 2],
        slot=[0, 1, 0, 1, 0],
    )
    terms = np.array([-1.0 + 4.0, 0.25 + 1.0, -1.0])  # Σ_k w r per decision
    bounds = Bounds(reward_min=-1.0, reward_max=2.0, weight_max=3.0)
    estimate = IPS().estimate(batch, interval="bernstein", bounds=bounds, alpha=0.1)
    # a row's w r lies in [3 * -1, 3 * 2]; a decision's sum of 2 slots in [-6, 12]: range 18
    half = bernstein_half(float(np.var(terms, ddof=1)), 3, 18.0, alpha=0.1)
    value = terms.mean()
    assert estimate.value == pytest.approx(value, rel=1e-12)
    assert (estimate.lo, estimate.hi) == pytest.approx((value - half, value + half), rel=1e-12)


def test_the_weight_bound_holds_to_a_relative_tolerance_of_1e_12() -> None:
    batch = small()  # largest weight 2
    IPS().estimate(batch, interval="bernstein", bounds=Bounds(weight_max=2.0))
    IPS().estimate(batch, interval="bernstein", bounds=Bounds(weight_max=2.0 / (1 + 5e-13)))
    message = r"^weight_max 1\.99999\d* is below the largest weight in the data \(2\.0\); the "
    message += "Bernstein bound would not hold$"
    with pytest.raises(ValueError, match=message):
        IPS().estimate(batch, interval="bernstein", bounds=Bounds(weight_max=2.0 / (1 + 1e-11)))
    with pytest.raises(ValueError, match=r"weight_max 1\.5 is below the largest weight"):
        IPS().estimate(batch, interval="bernstein", bounds=Bounds(weight_max=1.5))


def test_bernstein_refuses_rewards_outside_its_bounds() -> None:
    message = (
        r"^rewards and reward-model values lie in \[0\.0, 1\.0\], outside the bounds "
        r"\[0\.5, 2\.0\] the Bernstein interval assumes$"
    )
    with pytest.raises(ValueError, match=message):
        IPS().estimate(small(), interval="bernstein", bounds=Bounds(reward_min=0.5, reward_max=2.0))
    with pytest.raises(ValueError, match=r"outside the bounds \[0\.0, 0\.9\]"):
        IPS().estimate(small(), interval="bernstein", bounds=Bounds(reward_max=0.9))


def test_clipped_ips_keeps_a_bernstein_interval_over_the_clipped_range() -> None:
    estimate = ClippedIPS(1.0).estimate(small(), interval="bernstein")
    terms = np.array([0.5, 0.0, 1.0, 0.25])  # min(w, 1) r
    half = bernstein_half(float(np.var(terms, ddof=1)), 4, 1.0)  # terms span [0, min(4, 1)]
    assert estimate.value == pytest.approx(0.4375, rel=1e-12)
    assert (estimate.lo, estimate.hi) == pytest.approx((0.4375 - half, 0.4375 + half), rel=1e-12)
    assert estimate.diagnostics["clipped_share"] == 0.5  # weights 2 and 2 exceed 1
    assert ClippedIPS(1.0).has_bernstein
    assert ClippedIPS(1.0).interval_for("bernstein") == "bernstein"


def test_clipped_ips_at_a_weight_it_does_not_clip_is_ips() -> None:
    estimate = ClippedIPS(2.0).estimate(small())
    assert estimate.value == pytest.approx(0.6875, rel=1e-12)
    assert estimate.diagnostics["clipped_share"] == 0.0  # w > λ strictly


def test_diagnostics_of_the_small_log() -> None:
    diagnostics = IPS().estimate(small()).diagnostics
    assert diagnostics == pytest.approx(
        {"ess": 25 / 8.5, "max_weight": 2.0, "zero_target_share": 0.0, "mean_weight": 1.25}
    )


def snips_psi(w: np.ndarray, y: np.ndarray, slot: np.ndarray, n: int) -> tuple[float, np.ndarray]:
    """SNIPS value Σ_k Σ w y / Σ w, and the influence ψ_i = Σ_k w_ik (y_ik − V̂_k) / mean_i w_ik,
    for one row per decision (row i is decision i)."""
    value, psi = 0.0, np.zeros(n)
    for k in np.unique(slot):
        at = slot == k
        v_k = (w[at] * y[at]).sum() / w[at].sum()
        value += v_k
        psi[at] += w[at] * (y[at] - v_k) / (w[at].sum() / n)
    return value, psi


def test_snips_with_one_row_per_decision_and_several_slots() -> None:
    reward = np.array([1.0, 0.0, 0.5, 1.0, 0.0, 1.0])
    pscore = np.array([0.5, 0.25, 0.5, 0.5, 1.0, 0.25])
    target = np.array([0.25, 0.5, 0.5, 1.0, 0.5, 0.25])
    slot = np.array([0, 1, 0, 1, 0, 1])
    batch = OpeBatch.from_arrays(
        reward=reward, pscore=pscore, target_pscore=target, decision_id=np.arange(6), slot=slot
    )
    value, psi = snips_psi(target / pscore, reward, slot, 6)
    # slot 0: weights 0.5, 1, 0.5 -> (0.5 + 0.5) / 2 = 0.5; slot 1: weights 2, 2, 1 -> 3 / 5
    assert value == pytest.approx(1.1)
    estimate = SNIPS().estimate(batch)
    assert estimate.value == pytest.approx(1.1, rel=1e-12)
    half = Z_975 * se_of(psi)
    assert (estimate.lo, estimate.hi) == pytest.approx((1.1 - half, 1.1 + half), rel=1e-12)


def test_snips_with_one_slot_is_the_weighted_mean_with_its_delta_interval() -> None:
    value, psi = snips_psi(np.array([0.5, 2.0, 2.0, 0.5]), np.array(SMALL["reward"]),
                           np.zeros(4, dtype=int), 4)  # fmt: skip
    estimate = SNIPS().estimate(small())
    assert estimate.value == pytest.approx(2.75 / 5.0, rel=1e-12) == value
    half = Z_975 * se_of(psi)
    assert (estimate.lo, estimate.hi) == pytest.approx((value - half, value + half), rel=1e-12)


def test_snips_slot_with_no_target_weight_contributes_nothing() -> None:
    batch = OpeBatch.from_arrays(
        reward=[1.0, 1.0, 0.0, 1.0],
        pscore=[0.5, 0.5, 0.5, 0.5],
        target_pscore=[0.5, 0.0, 0.25, 0.0],
        decision_id=[0, 0, 1, 1],
        slot=[0, 1, 0, 1],
    )
    estimate = SNIPS().estimate(batch)
    assert estimate.value == pytest.approx(1.0 / 1.5, rel=1e-12)  # slot 0 only: (1 * 1) / 1.5
    assert math.isfinite(estimate.lo) and math.isfinite(estimate.hi)


def test_sndr_interval_keeps_the_reward_model_variance() -> None:
    reward = np.array([1.0, 0.0, 1.0, 0.0, 1.0])
    pscore = np.array([0.5, 0.5, 0.25, 1.0, 0.5])
    target = np.array([0.5, 1.0, 0.5, 0.5, 0.25])
    q_hat = np.array([0.6, 0.2, 0.4, 0.1, 0.5])
    v_hat = np.array([0.9, 0.1, 0.5, 0.3, 0.7])
    batch = OpeBatch.from_arrays(
        reward=reward, pscore=pscore, target_pscore=target, q_hat=q_hat, v_hat=v_hat
    )
    w = target / pscore
    correction, psi = snips_psi(w, reward - q_hat, np.zeros(5, dtype=int), 5)
    value = v_hat.mean() + correction
    psi = psi + v_hat  # the reward model's own spread is part of the influence
    estimate = SNDR().estimate(batch)
    assert estimate.value == pytest.approx(value, rel=1e-12)
    half = Z_975 * se_of(psi)
    assert (estimate.lo, estimate.hi) == pytest.approx((value - half, value + half), rel=1e-12)


def test_sndr_with_several_rows_per_decision_and_two_slots() -> None:
    reward = np.array([1.0, 0.0, 0.0, 1.0, 1.0, 1.0])
    pscore = np.array([0.5, 0.5, 0.25, 0.5, 1.0, 0.5])
    target = np.array([0.5, 1.0, 0.5, 0.25, 0.5, 0.5])
    q_hat = np.array([0.5, 0.5, 0.2, 0.4, 0.6, 0.3])
    v_hat = np.array([0.4, 0.2, 0.3, 0.5, 0.6, 0.1])
    decision, slot = np.array([0, 0, 1, 1, 2, 2]), np.array([0, 1, 0, 1, 0, 1])
    batch = OpeBatch.from_arrays(
        reward=reward, pscore=pscore, target_pscore=target, decision_id=decision, slot=slot,
        q_hat=q_hat, v_hat=v_hat,
    )  # fmt: skip
    w, e = target / pscore, reward - q_hat
    value = v_hat.sum() / 3
    psi = np.bincount(decision, weights=v_hat)
    for k in (0, 1):
        at = slot == k
        e_k = (w[at] * e[at]).sum() / w[at].sum()
        value += e_k
        psi[decision[at]] += w[at] * (e[at] - e_k) / (w[at].sum() / 3)
    estimate = SNDR().estimate(batch, interval="t")
    assert estimate.value == pytest.approx(value, rel=1e-12)
    half = 4.302652729696142 * se_of(psi)  # t, 2 degrees of freedom, 0.975
    assert (estimate.lo, estimate.hi) == pytest.approx((value - half, value + half), rel=1e-9)


def test_per_decision_slot_places_one_row_per_decision_by_its_slot() -> None:
    batch = OpeBatch.from_arrays(
        reward=[1.0, 1.0, 1.0], pscore=[1.0, 1.0, 1.0], target_pscore=[1.0, 1.0, 1.0],
        decision_id=[7, 8, 9], slot=[1, 0, 2],
    )  # fmt: skip
    out = per_decision_slot(batch, np.array([5.0, 6.0, 7.0]))
    np.testing.assert_array_equal(out, [[0, 5, 0], [6, 0, 0], [0, 0, 7]])


def test_self_normalized_estimators_have_no_bernstein_interval() -> None:
    assert not SNIPS().has_bernstein and IPS().has_bernstein
    assert SNIPS().interval_for("bernstein") == "t"
    assert SNIPS().interval_for("normal") == "normal"
    message = (
        "^snipw has no Bernstein interval: it is not a mean of bounded terms; use normal, t or "
        "bootstrap$"
    )
    with pytest.raises(ValueError, match=message):
        SNIPS().estimate(small(), interval="bernstein")


def test_bootstrap_interval_needs_bootstrap_sums_and_a_known_interval_name() -> None:
    partial = IPS().partial(small())
    with pytest.raises(
        ValueError, match=r"^the bootstrap interval needs a partial made with n_bootstrap > 0$"
    ):
        IPS().finish(partial, interval="bootstrap")
    with pytest.raises(
        ValueError, match=r"^interval must be one of normal, t, bernstein, bootstrap; got 'wald'$"
    ):
        IPS().finish(partial, interval="wald")
    with pytest.raises(ValueError, match=r"^n_bootstrap must be a non-negative int; got -1$"):
        IPS().partial(small(), n_bootstrap=-1)
    with pytest.raises(ValueError, match=r"^n_bootstrap must be a non-negative int; got True$"):
        IPS().partial(small(), n_bootstrap=True)  # type: ignore[arg-type]


def test_bootstrap_interval_brackets_the_estimate_within_the_terms_range() -> None:
    estimate = IPS().estimate(small(), interval="bootstrap", n_bootstrap=200, seed=3)
    assert estimate.interval == "bootstrap"
    assert 0.0 <= estimate.lo < 0.6875 < estimate.hi <= 2.0
    same = IPS().estimate(small(), interval="bootstrap", n_bootstrap=200, seed=3)
    assert (same.lo, same.hi) == (estimate.lo, estimate.hi)


def test_partials_merge_to_the_whole_and_refuse_mismatches() -> None:
    first = OpeBatch.from_arrays(**{k: v[:2] for k, v in SMALL.items()})
    second = OpeBatch.from_arrays(**{k: v[2:] for k, v in SMALL.items()})
    merged = IPS().partial(first).merge(IPS().partial(second))
    assert (merged.value_min, merged.value_max, merged.min_pscore) == (0.0, 1.0, 0.25)
    assert merged.slots == 1
    whole = IPS().finish(merged, interval="bernstein")
    alone = IPS().estimate(small(), interval="bernstein")
    assert (whole.value, whole.lo, whole.hi) == pytest.approx((alone.value, alone.lo, alone.hi))
    with pytest.raises(ValueError, match=r"^cannot merge partials of ipw and snipw$"):
        IPS().partial(first).merge(SNIPS().partial(second))
    with pytest.raises(
        ValueError, match=r"^cannot merge a partial with bootstrap sums and one without$"
    ):
        IPS().partial(first, n_bootstrap=5).merge(IPS().partial(second))
    with pytest.raises(
        ValueError, match=r"^cannot merge a partial with bootstrap sums and one without$"
    ):
        IPS().partial(first).merge(IPS().partial(second, n_bootstrap=5))


def test_merge_keeps_the_widest_value_range_and_most_slots() -> None:
    a = Partial("ipw", *[getattr(IPS().partial(small()), f) for f in ("moments", "weights")],
                value_min=-1.0, value_max=0.5, slots=3, min_pscore=0.2)  # fmt: skip
    b = replace_range(a, value_min=0.0, value_max=2.0, slots=1, min_pscore=0.4)
    merged = a.merge(b)
    assert (merged.value_min, merged.value_max, merged.slots, merged.min_pscore) == (
        -1.0, 2.0, 3, 0.2,
    )  # fmt: skip
    merged = b.merge(a)
    assert (merged.value_min, merged.value_max, merged.slots, merged.min_pscore) == (
        -1.0, 2.0, 3, 0.2,
    )  # fmt: skip


def replace_range(partial: Partial, **changes: float) -> Partial:
    from dataclasses import replace

    return replace(partial, **changes)


def test_estimate_as_dict_flattens_the_diagnostics() -> None:
    estimate = Estimate("ipw", 0.5, 0.25, 0.75, 10, {"ess": 8.0}, "t")
    assert estimate.as_dict() == {
        "name": "ipw", "value": 0.5, "lo": 0.25, "hi": 0.75, "interval": "t",
        "n_decisions": 10, "ess": 8.0,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"reward_min": -math.inf}, "reward_min and reward_max must be finite"),
        ({"reward_max": math.nan}, "reward_min and reward_max must be finite"),
        ({"reward_max": 0.0}, r"reward_max must exceed reward_min; got \[0\.0, 0\.0\]"),
        ({"weight_max": 0.0}, "weight_max must be positive; got 0.0"),
        ({"weight_max": -1.0}, "weight_max must be positive; got -1.0"),
    ],
)
def test_bounds_refuse_bad_values_with_a_message(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{message}$"):
        Bounds(**kwargs)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (True, "lambda_ must be a number; got True"),
        ("1", "lambda_ must be a number; got '1'"),
        (None, "lambda_ must be a number; got None"),
        (-0.5, r"lambda_ must be in \[0, inf\]; got -0\.5"),
        (math.nan, r"lambda_ must be in \[0, inf\]; got nan"),
    ],
)
def test_check_hyperparameter_messages(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{message}$"):
        check_hyperparameter("lambda_", value)  # type: ignore[arg-type]


def test_check_hyperparameter_accepts_numpy_numbers_zero_and_infinity() -> None:
    assert check_hyperparameter("tau", np.int64(3)) == 3.0
    assert check_hyperparameter("tau", np.float32(0.5)) == 0.5
    assert check_hyperparameter("tau", 0) == 0.0
    assert check_hyperparameter("tau", math.inf) == math.inf


def test_the_base_estimator_has_no_round_terms() -> None:
    with pytest.raises(NotImplementedError):
        Estimator().estimate(small())


def dirty(size: int) -> None:
    """Leave NaN in freed memory of ``size`` floats: numpy hands a small freed block to the next
    array of the same size, so an entry that code forgets to set reads NaN instead of a lucky 0."""
    np.full(size, np.nan)


def test_self_normalized_value_and_gradient_skip_a_slot_without_weight() -> None:
    z_mean = np.array([0.5, 0.3, 0.6, 0.0, 0.0])  # offset, slot 0 (A, B), slot 1 (A = B = 0)
    dirty(2)
    assert self_normalized_value(z_mean) == 0.5 + 0.5
    dirty(2)
    dirty(5)
    gradient = self_normalized_gradient(z_mean)
    np.testing.assert_array_equal(gradient, [1.0, 1 / 0.6, -0.3 / 0.36, 0.0, 0.0])


def test_self_normalized_gradient_starts_with_the_offsets_one() -> None:
    z_mean = np.array([0.2, 0.5, 2.0])
    for _ in range(3):
        dirty(3)
        np.testing.assert_array_equal(self_normalized_gradient(z_mean), [1.0, 0.5, -0.125])


def test_ragged_slates_whose_last_decision_is_shorter() -> None:
    # decision 0 fills slots 0 and 1, decision 1 only slot 0
    batch = OpeBatch.from_arrays(
        reward=[1.0, 0.0, 1.0], pscore=[0.5, 0.5, 0.25], target_pscore=[0.5, 0.25, 0.5],
        decision_id=["a", "a", "b"], slot=[0, 1, 0],
    )  # fmt: skip
    np.testing.assert_array_equal(per_decision_slot(batch, np.array([1.0, 2.0, 3.0])),
                                  [[1.0, 2.0], [3.0, 0.0]])  # fmt: skip
    # slot 0: weights 1, 2, rewards 1, 1 -> 1; slot 1: weight 0.5, reward 0 -> 0
    assert SNIPS().estimate(batch).value == pytest.approx(1.0, rel=1e-12)
    assert IPS().estimate(batch).value == pytest.approx((1.0 + 2.0) / 2, rel=1e-12)


def test_sndr_with_one_row_per_decision_and_several_slots() -> None:
    reward = np.array([1.0, 0.0, 1.0, 1.0, 0.0])
    pscore = np.array([0.5, 0.25, 0.5, 0.5, 1.0])
    target = np.array([0.25, 0.5, 0.5, 1.0, 0.5])
    q_hat = np.array([0.5, 0.2, 0.4, 0.6, 0.3])
    v_hat = np.array([0.6, 0.1, 0.2, 0.9, 0.4])
    slot = np.array([0, 1, 0, 1, 0])
    batch = OpeBatch.from_arrays(
        reward=reward, pscore=pscore, target_pscore=target, decision_id=np.arange(5), slot=slot,
        q_hat=q_hat, v_hat=v_hat,
    )  # fmt: skip
    correction, psi = snips_psi(target / pscore, reward - q_hat, slot, 5)
    value = v_hat.mean() + correction
    estimate = SNDR().estimate(batch)
    assert estimate.value == pytest.approx(value, rel=1e-12)
    half = Z_975 * se_of(psi + v_hat)
    assert (estimate.lo, estimate.hi) == pytest.approx((value - half, value + half), rel=1e-12)


def test_weighted_reward_range_spans_zero_and_the_weighted_bounds() -> None:
    assert weighted_reward_range(Bounds(reward_min=0.2, reward_max=0.5), 1.5) == (0.0, 0.75)
    assert weighted_reward_range(Bounds(reward_min=-0.5, reward_max=-0.1), 2.0) == (-1.0, 0.0)


def test_bernstein_range_below_one() -> None:
    # rewards in [0, 0.5], weights <= 1.5: a term spans [0, 0.75]
    batch = OpeBatch.from_arrays(
        reward=[0.5, 0.0, 0.25, 0.5], pscore=[1.0, 1.0, 1.0, 1.0],
        target_pscore=[1.0, 0.5, 1.0, 0.25],
    )  # fmt: skip
    terms = np.array([0.5, 0.0, 0.25, 0.125])
    bounds = Bounds(reward_max=0.5, weight_max=1.5)
    estimate = IPS().estimate(batch, interval="bernstein", bounds=bounds)
    half = bernstein_half(float(np.var(terms, ddof=1)), 4, 0.75)
    assert (estimate.lo, estimate.hi) == pytest.approx(
        (terms.mean() - half, terms.mean() + half), rel=1e-12
    )


def test_a_weight_bound_below_one_is_a_valid_bound() -> None:
    assert Bounds(weight_max=0.5).weight_max == 0.5


def test_the_weight_bound_accepts_the_largest_weight_at_its_tolerance() -> None:
    weight_max = 2.0 / (1 + 1e-12)  # weight_max * (1 + 1e-12) is exactly 2.0, the largest weight
    estimate = IPS().estimate(small(), interval="bernstein", bounds=Bounds(weight_max=weight_max))
    assert math.isfinite(estimate.hi)


def test_defaults_normal_interval_and_bootstrap_seed_zero() -> None:
    partial = IPS().partial(small())
    estimate = IPS().finish(partial)
    assert (estimate.name, estimate.interval) == ("ipw", "normal")
    assert partial.bootstrap is None  # no bootstrap sums unless asked
    assert IPS().estimate(small()).interval == "normal"
    seeded = IPS().partial(small(), n_bootstrap=7, seed=0).bootstrap
    default = IPS().partial(small(), n_bootstrap=7).bootstrap
    assert seeded is not None and default is not None
    np.testing.assert_array_equal(default.weighted, seeded.weighted)
    other = IPS().partial(small(), n_bootstrap=7, seed=1).bootstrap
    assert other is not None and not np.array_equal(other.weighted, seeded.weighted)


def test_estimate_passes_its_seed_to_the_bootstrap() -> None:
    def interval(seed: int | None) -> tuple[float, float]:
        kwargs = {} if seed is None else {"seed": seed}
        e = IPS().estimate(small(), interval="bootstrap", n_bootstrap=50, **kwargs)
        return e.lo, e.hi

    by_hand = IPS().finish(IPS().partial(small(), n_bootstrap=50, seed=4), interval="bootstrap")
    assert interval(4) == (by_hand.lo, by_hand.hi)
    assert interval(None) == interval(0) != interval(4)


def test_an_estimator_with_its_own_weights_describes_them() -> None:
    batch = OpeBatch.from_arrays(
        reward=[1.0, 0.0], pscore=[0.5, 0.5], target_pscore=[0.5, 0.5],
        slate_pscores={"pscore_slate": [0.2, 0.1], "target_pscore_slate": [0.3, 0.05]},
    )  # fmt: skip
    partial = SlateStandardIPS().partial(batch)
    assert partial.weights.max_weight == pytest.approx(1.5)  # not the marginal weights' 1.0
    assert partial.weights.rows == 2


def test_merged_bootstrap_sums_give_the_whole_logs_interval() -> None:
    first = OpeBatch.from_arrays(**{k: v[:2] for k, v in SMALL.items()})
    second = OpeBatch.from_arrays(**{k: v[2:] for k, v in SMALL.items()}, row_offset=2)
    merged = (
        IPS()
        .partial(first, n_bootstrap=40, seed=2)
        .merge(IPS().partial(second, n_bootstrap=40, seed=2))
    )
    assert merged.name == "ipw"
    whole = IPS().estimate(small(), interval="bootstrap", n_bootstrap=40, seed=2)
    chunked = IPS().finish(merged, interval="bootstrap")
    assert (chunked.lo, chunked.hi) == pytest.approx((whole.lo, whole.hi), rel=1e-12)
