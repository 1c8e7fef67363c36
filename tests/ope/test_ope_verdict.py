"""The primary estimate and its verdict (``ope.verdict``): SLOPE's walk, the unsupported bound,
the checks, and the lift."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ope import OpeBatch
from ope.model_based import SwitchDR
from ope.verdict import (
    SWITCH_LADDER,
    Rung,
    Support,
    VerdictLimits,
    primary_estimate,
    primary_lift,
    rung_name,
    slope_index,
    unsupported_bounds,
)


def rung(value: float, half: float) -> Rung:
    return Rung(name="r", value=value, lo=value - half, hi=value + half)


@pytest.mark.parametrize(
    ("rungs", "chosen"),
    [
        ([rung(0.5, 0.2), rung(0.52, 0.1), rung(0.51, 0.05), rung(0.5, 0.01)], 3),
        # the third rung's interval [0.66, 0.72] misses the first two's, [0.4, 0.6]
        ([rung(0.5, 0.2), rung(0.5, 0.1), rung(0.69, 0.03), rung(0.69, 0.01)], 1),
        # a rung that contradicts stops the walk even if a later one would agree again
        ([rung(0.5, 0.1), rung(0.9, 0.01), rung(0.5, 0.01)], 0),
        ([rung(0.5, math.inf), rung(0.4, 0.1)], 1),
        ([rung(0.5, 0.1), rung(0.4, math.nan)], 0),
    ],
)
def test_slope_walks_until_the_widened_intervals_stop_meeting(rungs: list[Rung], chosen: int):
    assert slope_index(rungs) == chosen


def test_slope_intersects_the_intervals_themselves_or_widened() -> None:
    # |0.5 − 0.8| = 0.3 = 2 × (0.1 + 0.05): the intervals meet only when widened twice
    assert slope_index([rung(0.5, 0.1), rung(0.8, 0.05)]) == 0
    assert slope_index([rung(0.5, 0.1), rung(0.8, 0.05)], widening=2.0) == 1
    assert slope_index([rung(0.5, 0.1), rung(0.8, 0.049)], widening=2.0) == 0
    assert slope_index([rung(0.5, 0.1), rung(0.6, 0.0)]) == 1  # just meeting


def test_rung_names() -> None:
    assert [rung_name(t) for t in (math.inf, 30.0, 0.0)] == ["dr", "switch-dr(tau=30)", "dm"]
    assert SWITCH_LADDER[0] == math.inf and SWITCH_LADDER[-1] == 0.0


@pytest.mark.parametrize(
    ("support", "model_based", "expected"),
    [
        (Support(), True, (0.0, 0.0)),
        (Support(share=0.0, mass=0.0, model_only=0.0), True, (0.0, 0.0)),
        (Support(share=0.2, mass=2.0, model_only=0.3), True, (0.3, 1.7)),
        (Support(share=0.2, mass=2.0, model_only=0.3), False, (0.0, 2.0)),
    ],
)
def test_the_unsupported_bound_spans_every_value_the_unseen_positions_can_take(
    support: Support, model_based: bool, expected: tuple[float, float]
) -> None:
    assert unsupported_bounds(support, model_based=model_based, reward_max=1.0) == pytest.approx(
        expected
    )


def bandit(n: int, seed: int, *, q_noise: float = 0.05, target_shift: float = 0.0) -> OpeBatch:
    """Uniform logging over 4 actions, a target that prefers action 0, q̂ near the truth."""
    rng = np.random.default_rng(seed)
    truth = np.array([0.6, 0.4, 0.3, 0.2])
    action = rng.integers(0, 4, n)
    reward = (rng.random(n) < truth[action]).astype(float)
    target = np.array([0.7 - target_shift, 0.1 + target_shift, 0.1, 0.1])
    q = truth + rng.normal(0, q_noise, 4)
    return OpeBatch.from_arrays(
        reward=reward,
        pscore=np.full(n, 0.25),
        target_pscore=target[action],
        q_hat=q[action],
        v_hat=np.full(n, target @ q),
    )


def test_primary_is_the_chosen_rungs_value_with_the_first_rung_in_its_interval() -> None:
    batch = bandit(4000, 0)
    primary = primary_estimate(batch, support=Support(share=0.0, mass=0.0, model_only=0.0))
    chosen = next(r for r in primary.path if r.name == primary.estimator)
    direct = SwitchDR(tau=chosen.tau).estimate(batch)
    first = primary.path[0]
    # the walk starts at the weight cap, N / min_expected_rows, and ends at DM
    assert first.tau == 4000 / VerdictLimits().min_expected_rows
    assert first.name == "switch-dr(tau=800)" and primary.path[-1].name == "dm"
    assert (primary.value, primary.estimator_lo, primary.estimator_hi) == pytest.approx(
        (direct.value, direct.lo, direct.hi), abs=1e-12
    )
    assert (chosen.lo, chosen.hi) == (primary.estimator_lo, primary.estimator_hi)
    assert (primary.lo, primary.hi) == (min(chosen.lo, first.lo), max(chosen.hi, first.hi))
    assert primary.reliable and primary.reasons == ["every check passed"]


def test_without_a_weight_cap_the_walk_starts_at_dr() -> None:
    primary = primary_estimate(bandit(500, 0), limits=VerdictLimits(min_expected_rows=0))
    assert [r.name for r in primary.path][:2] == ["dr", "switch-dr(tau=100)"]
    assert len(primary.path) == len(SWITCH_LADDER)


def test_a_wrong_outcome_model_keeps_the_choice_near_the_cap() -> None:
    good = primary_estimate(bandit(4000, 1, q_noise=0.0))
    assert good.estimator == "dm"  # the model agrees with every less biased rung
    rng_bad = bandit(4000, 1, q_noise=0.0)
    bad = OpeBatch.from_arrays(
        reward=rng_bad.reward,
        pscore=rng_bad.pscore,
        target_pscore=rng_bad.target_pscore,
        q_hat=rng_bad.q_hat + 0.25,
        v_hat=rng_bad.v_hat + 0.25,
    )
    primary = primary_estimate(bad)
    assert primary.estimator != "dm"
    truth = 0.7 * 0.6 + 0.1 * (0.4 + 0.3 + 0.2)
    assert primary.lo <= truth <= primary.hi


@pytest.mark.parametrize(
    ("support", "limits", "reason"),
    [
        (Support(share=0.3, mass=3.0, model_only=1.0), VerdictLimits(), "lies where the logging"),
        (Support(), VerdictLimits(min_ess=1e9), "effective sample size"),
        (Support(), VerdictLimits(max_relative_half_width=1e-6), "interval half-width"),
    ],
)
def test_each_failed_check_is_a_reason(
    support: Support, limits: VerdictLimits, reason: str
) -> None:
    primary = primary_estimate(bandit(2000, 2), support=support, limits=limits)
    assert not primary.reliable and primary.verdict == "not reliable"
    assert any(reason in text for text in primary.reasons)


def test_thin_support_widens_the_interval_by_the_unsupported_bound() -> None:
    batch = bandit(2000, 3)
    full = primary_estimate(batch)
    thin = primary_estimate(batch, support=Support(share=0.25, mass=1.0, model_only=0.4))
    assert thin.value == full.value
    assert thin.lo == pytest.approx(full.lo - 0.4) and thin.hi == pytest.approx(full.hi + 0.6)


@pytest.mark.parametrize(
    ("field", "value"),
    [("min_ess", -1.0), ("max_unsupported", math.nan), ("reward_max", "1"), ("min_ess", True)],
)
def test_bad_limits_are_named(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        VerdictLimits(**{field: value})


def test_primary_lift_of_a_policy_against_itself_is_zero_and_reliable() -> None:
    batch = bandit(3000, 4)
    lift = primary_lift(batch, batch)
    assert lift.value == pytest.approx(0.0, abs=1e-12)
    assert lift.lo == pytest.approx(0.0, abs=1e-12) and lift.hi == pytest.approx(0.0, abs=1e-12)
    assert lift.reliable


def test_primary_lift_covers_the_true_lift() -> None:
    candidate, baseline = bandit(6000, 5), bandit(6000, 5, target_shift=0.3)
    truth = 0.3 * (0.6 - 0.4)
    lift = primary_lift(candidate, baseline)
    assert lift.lo <= truth <= lift.hi
