"""The A/B guards' statistics: the sample-ratio check against scipy's chi-square and at its level
over repeated multinomial draws, the plan's MDE and sample size (its power measured by
simulation), and bad inputs refused with the field and the expectation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from ope.ab_plan import baseline_noise, plan
from ope.ab_srm import srm_check


def test_srm_matches_the_chi_square_by_hand() -> None:
    check = srm_check({"control": 550, "new": 450}, {"control": 0.5, "new": 0.5}, alpha=0.01)
    assert check.chi2 == pytest.approx(2 * 50**2 / 500)
    assert check.pvalue == pytest.approx(stats.chi2.sf(10.0, 1))
    assert check.flagged and check.df == 1
    assert not srm_check({"control": 550, "new": 450}, {"control": 0.5, "new": 0.5}).flagged
    three = srm_check({"a": 480, "b": 330, "c": 190}, {"a": 0.5, "b": 0.3, "c": 0.2})
    expected = stats.chisquare([480, 330, 190], [500, 300, 200])
    assert three.pvalue == pytest.approx(expected.pvalue) and three.df == 2


def test_srm_counts_a_configured_arm_nobody_reached_as_zero() -> None:
    check = srm_check({"control": 40}, {"control": 0.5, "new": 0.5})
    assert check.observed == {"control": 40, "new": 0} and check.flagged


@pytest.mark.parametrize(
    ("users", "shares", "alpha", "message"),
    [
        ({"a": 5, "b": 5}, {"a": 0.5, "b": 0.4}, 0.001, "shares must add up to 1; got 0.9"),
        ({"a": 5, "b": 5}, {"a": 1.0}, 0.001, "at least 2 arms"),
        ({"a": 5, "b": 5}, {"a": 0.0, "b": 1.0}, 0.001, r"share of arm 'a' must be in \(0, 1\]"),
        ({"a": 5, "c": 5}, {"a": 0.5, "b": 0.5}, 0.001, "arm.*c in the log are not among"),
        ({"a": 5, "b": 5}, {"a": 0.5, "b": 0.5}, 1.5, r"srm alpha must be in \(0, 1\)"),
        ({"a": 0, "b": 0}, {"a": 0.5, "b": 0.5}, 0.001, "at least one user"),
    ],
)
def test_srm_refuses_bad_input(
    users: dict[str, int], shares: dict[str, float], alpha: float, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        srm_check(users, shares, alpha=alpha)


def test_srm_false_alarms_at_its_level_and_detects_55_45() -> None:
    rng = np.random.default_rng(0)
    shares = {"a": 0.5, "b": 0.5}
    runs = 2000
    fair = rng.multinomial(2000, [0.5, 0.5], size=runs)
    alarms = sum(srm_check({"a": a, "b": b}, shares, alpha=0.05).flagged for a, b in fair)
    low, high = stats.binom.ppf([0.0005, 0.9995], runs, 0.05)
    assert low <= alarms <= high  # at α, within a 99.9% binomial band
    skewed = rng.multinomial(2000, [0.55, 0.45], size=200)
    found = sum(srm_check({"a": a, "b": b}, shares).flagged for a, b in skewed)
    assert found / 200 > 0.8  # χ² ≈ 20 on average: flagged at 0.001 nearly always


def test_plan_users_and_mde_are_inverse_and_match_the_formula() -> None:
    made = plan(sigma=2.0, treatment_share=0.5, control_share=0.5, users=1000)
    z = stats.norm.ppf(0.975) + stats.norm.ppf(0.8)
    assert made.mde == pytest.approx(z * 2.0 * np.sqrt(4 / 1000))
    back = plan(sigma=2.0, treatment_share=0.5, control_share=0.5, mde=made.mde)
    assert back.users in (1000, 1001)
    uneven = plan(sigma=2.0, treatment_share=0.2, control_share=0.8, users=1000)
    assert uneven.mde > made.mde  # a smaller arm detects less
    assert made.variance_at_horizon == pytest.approx(4.0 * 4 / 1000)


def test_planned_size_has_its_power_in_simulation() -> None:
    rng = np.random.default_rng(1)
    made = plan(sigma=1.0, treatment_share=0.5, control_share=0.5, mde=0.2, power=0.8)
    half = made.users // 2
    reps = 1500
    treated = rng.normal(0.2, 1.0, size=(reps, half))
    control = rng.normal(0.0, 1.0, size=(reps, half))
    pvalues = stats.ttest_ind(treated, control, axis=1).pvalue
    power = float((pvalues < 0.05).mean())
    assert abs(power - 0.8) < 0.045


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sigma": 0.0, "users": 10}, "sigma .* must be a positive number"),
        ({"sigma": 1.0, "users": 10, "treatment_share": 1.2}, r"treatment_share must be in"),
        ({"sigma": 1.0, "users": 10, "control_share": 0.7}, "must be <= 1"),
        ({"sigma": 1.0, "users": 10, "alpha": 0.0}, r"alpha must be in \(0, 1\)"),
        ({"sigma": 1.0, "users": 10, "power": 1.0}, r"power must be in \(0, 1\)"),
        ({"sigma": 1.0}, "exactly one of users and mde"),
        ({"sigma": 1.0, "users": 10, "mde": 0.1}, "exactly one of users and mde"),
        ({"sigma": 1.0, "users": 1}, "users must be >= 2"),
        ({"sigma": 1.0, "mde": -0.1}, "mde must be a positive number"),
    ],
)
def test_plan_refuses_bad_input(kwargs: dict, message: str) -> None:
    arguments = {"treatment_share": 0.5, "control_share": 0.5} | kwargs
    with pytest.raises(ValueError, match=message):
        plan(**arguments)


def test_baseline_noise_is_the_linearized_per_user_sd() -> None:
    import pandas as pd

    rows = pd.DataFrame({"user_id": ["a", "a", "b", "c"], "reward": [1.0, 0.0, 1.0, 0.0]})
    noise = baseline_noise(rows)
    mean = 2 / 4
    linear = np.array([1 - 2 * mean, 1 - mean, 0 - mean]) / (4 / 3)
    assert noise.mean == mean and noise.sigma == pytest.approx(linear.std(ddof=1))
    with pytest.raises(ValueError, match="lack column"):
        baseline_noise(rows.drop(columns="reward"))
    with pytest.raises(ValueError, match="at least 2 users"):
        baseline_noise(rows[rows["user_id"] == "a"])
