"""The slate estimators on two decisions of two slots, by hand: which propensity column each
one weighs by, its value, its diagnostics, its Bernstein bound and which logs it runs on."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from ope import OpeBatch, SlateIndependentIPS, SlateRewardInteractionIPS, SlateStandardIPS
from ope.slate import slate_estimators

# decision 0 shows two items, decision 1 two more; rewards 1, 0 and 1, 1
REWARD = np.array([1.0, 0.0, 1.0, 1.0])
COLUMNS = {
    "pscore": [0.5, 0.5, 0.25, 0.5],
    "target_pscore": [0.5, 0.25, 0.5, 0.5],
    "decision_id": [0, 0, 1, 1],
    "slot": [0, 1, 0, 1],
}
SLATE = {
    "pscore_slate": [0.2, 0.2, 0.1, 0.1],
    "target_pscore_slate": [0.1, 0.1, 0.3, 0.3],
    "pscore_cascade": [0.5, 0.2, 0.25, 0.1],
    "target_pscore_cascade": [0.5, 0.1, 0.5, 0.3],
}


def batch(slate: dict[str, list[float]] | None = None) -> OpeBatch:
    return OpeBatch.from_arrays(reward=REWARD, slate_pscores=SLATE if slate is None else slate,
                                **COLUMNS)  # fmt: skip


def bernstein_half(variance: float, n: int, term_range: float, alpha: float = 0.05) -> float:
    log_term = math.log(4.0 / alpha)
    return math.sqrt(2 * variance * log_term / n) + 7 * term_range * log_term / (3 * (n - 1))


def test_standard_ips_weighs_every_slot_by_the_whole_slate() -> None:
    # decision 0: 0.1 / 0.2 * (1 + 0) = 0.5; decision 1: 0.3 / 0.1 * (1 + 1) = 6
    estimate = SlateStandardIPS().estimate(batch())
    assert estimate.value == pytest.approx(3.25, rel=1e-12)
    assert estimate.diagnostics["max_weight"] == pytest.approx(3.0)
    assert estimate.diagnostics["mean_weight"] == pytest.approx((0.5 * 2 + 3.0 * 2) / 4)


def test_reward_interaction_ips_weighs_each_slot_by_its_prefix() -> None:
    # decision 0: 1 * 1 + 0.5 * 0 = 1; decision 1: 2 * 1 + 3 * 1 = 5
    estimate = SlateRewardInteractionIPS().estimate(batch())
    assert estimate.value == pytest.approx(3.0, rel=1e-12)
    assert estimate.diagnostics["max_weight"] == pytest.approx(3.0)


def test_independent_ips_weighs_each_slot_by_its_marginal() -> None:
    # decision 0: 1 * 1 + 0.5 * 0 = 1; decision 1: 2 * 1 + 1 * 1 = 3
    assert SlateIndependentIPS().estimate(batch()).value == pytest.approx(2.0, rel=1e-12)


def test_bernstein_bounds_the_weight_by_the_smallest_logged_slate_propensity() -> None:
    # weights <= 1 / 0.1 = 10, two slots: a decision's term spans [0, 20]
    estimate = SlateStandardIPS().estimate(batch(), interval="bernstein")
    half = bernstein_half(float(np.var([0.5, 6.0], ddof=1)), 2, 20.0)
    assert (estimate.lo, estimate.hi) == pytest.approx((3.25 - half, 3.25 + half), rel=1e-12)
    estimate = SlateRewardInteractionIPS().estimate(batch(), interval="bernstein")
    half = bernstein_half(float(np.var([1.0, 5.0], ddof=1)), 2, 20.0)
    assert (estimate.lo, estimate.hi) == pytest.approx((3.0 - half, 3.0 + half), rel=1e-12)


def test_each_runs_only_where_its_columns_are() -> None:
    full, bare = batch(), batch({})
    assert SlateStandardIPS().supports(full) and not SlateStandardIPS().supports(bare)
    assert SlateRewardInteractionIPS().supports(full)
    assert not SlateRewardInteractionIPS().supports(bare)
    assert SlateIndependentIPS().supports(bare)
    one_slot = OpeBatch.from_arrays(reward=[1.0], pscore=[0.5], target_pscore=[0.5])
    assert not SlateIndependentIPS().supports(one_slot)
    with pytest.raises(ValueError, match=r"^the batch has no pscore_slate / target_pscore_slate$"):
        SlateStandardIPS()._weight(bare)
    half = dataclasses.replace(full, target_pscore_cascade=None)  # built past OpeBatch's checks
    with pytest.raises(ValueError, match=r"^the batch has no pscore_cascade / target_pscore_casc"):
        SlateRewardInteractionIPS()._weight(half)
    with pytest.raises(ValueError, match="sips needs column"):
        SlateStandardIPS().estimate(bare)


def test_slate_estimators_in_report_order() -> None:
    assert [e.name for e in slate_estimators()] == ["sips", "iips", "rips", "pi"]
