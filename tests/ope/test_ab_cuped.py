"""CUPED on the per-decision A/B rows: with no information in the covariates it is the clustered
analysis itself; with members whose pre-period predicts their plays it narrows the interval,
stays centred on the true lift and keeps its coverage; bad covariates are refused. And the
agreement summary of predictions against A/B results, with its HTML report."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ope.ab import analyze
from ope.ab_agreement import agreement_summary
from ope.ab_agreement_report import render_agreement_html
from ope.ab_cuped import cuped


def members(rng: np.random.Generator, n_users: int, lift: float) -> tuple[pd.DataFrame, ...]:
    """Per-decision rows and pre-period covariates of members whose play rate persists."""
    rate = rng.gamma(2.0, 0.2, size=n_users)
    users = np.array([f"u{i}" for i in range(n_users)])
    arm = np.where(rng.random(n_users) < 0.5, "new", "control")
    pre_n = rng.integers(10, 30, size=n_users)
    covariates = pd.DataFrame(
        {"user_id": users, "pre_plays": rng.poisson(rate * pre_n), "pre_decisions": pre_n}
    )
    n = rng.integers(1, 6, size=n_users)
    user_of = np.repeat(np.arange(n_users), n)
    mean = rate[user_of] + lift * (arm[user_of] == "new")
    rows = pd.DataFrame(
        {"arm": arm[user_of], "user_id": users[user_of], "reward": rng.poisson(mean)}
    )
    return rows, covariates


def test_uninformative_covariates_give_the_clustered_interval() -> None:
    rows, covariates = members(np.random.default_rng(0), 300, 0.1)
    covariates[["pre_plays", "pre_decisions"]] = 0.0
    adjusted = cuped(rows, covariates, control="control").differences["new"]
    clustered = analyze(rows, control="control").differences["new"]["clustered"]
    assert adjusted.value == pytest.approx(clustered.value)
    assert (adjusted.lo, adjusted.hi) == pytest.approx((clustered.lo, clustered.hi))


def test_cuped_narrows_stays_centred_and_covers() -> None:
    rng = np.random.default_rng(1)
    lift, errors, ratios, removed, covered = 0.05, [], [], [], 0
    reps = 150
    for _ in range(reps):
        rows, covariates = members(rng, 400, lift)
        result = cuped(rows, covariates, control="control")
        adjusted = result.differences["new"]
        plain = analyze(rows, control="control").differences["new"]["clustered"]
        errors.append(adjusted.value - lift)
        ratios.append((adjusted.hi - adjusted.lo) / (plain.hi - plain.lo))
        covered += adjusted.lo <= lift <= adjusted.hi
        removed.append(result.arms["new"].variance_removed)
    assert np.mean(ratios) < 0.9 and np.mean(removed) > 0.15
    assert abs(np.mean(errors)) < 3 * np.std(errors) / np.sqrt(reps)
    assert covered / reps > 0.88


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c.drop(columns="user_id"), "lack column user_id"),
        (lambda c: pd.concat([c, c.head(1)]), "one row per user; user 'u0' repeats"),
        (lambda c: c.assign(pre_plays=np.inf), "covariates must be finite"),
        (lambda c: c[["user_id"]], "at least one covariate"),
    ],
)
def test_bad_covariates_are_refused(change: object, message: str) -> None:
    rows, covariates = members(np.random.default_rng(2), 50, 0.0)
    with pytest.raises(ValueError, match=message):
        cuped(rows, change(covariates), control="control")  # type: ignore[operator]


def agreement_rows() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "experiment": ["e1", "e2", "e3"],
            "arm": ["new"] * 3,
            "predicted": [0.10, -0.20, 0.05],
            "predicted_lo": [0.00, -0.30, -0.05],
            "predicted_hi": [0.20, -0.10, 0.15],
            "observed": [0.12, 0.05, None],
            "observed_lo": [0.05, 0.00, None],
            "observed_hi": [0.19, 0.10, None],
            "srm_flagged": [False, True, False],
        }
    )


def test_agreement_summary_counts_overlaps_and_bias() -> None:
    frame = agreement_rows()
    frame.loc[2, ["observed", "observed_lo", "observed_hi"]] = [0.0, -0.1, 0.1]
    frame.loc[2, ["predicted", "predicted_lo", "predicted_hi"]] = [None, None, None]
    summary = agreement_summary(frame.assign(srm_flagged=False))
    assert summary.experiments == 3 and summary.with_prediction == 2
    assert summary.overlap_share == 0.5  # e1 overlaps, e2 does not
    assert summary.bias == pytest.approx(((0.10 - 0.12) + (-0.20 - 0.05)) / 2)
    assert summary.same_sign_share == 0.5
    assert summary.observed_in_predicted_share == 0.5
    guarded = agreement_summary(frame)  # e2's sample ratio was flagged: left out
    assert guarded.with_prediction == 1 and guarded.srm_flagged == 1
    assert guarded.overlap_share == 1.0 and guarded.bias == pytest.approx(0.10 - 0.12)
    html = render_agreement_html(frame, guarded)
    assert "<img" in html and "e2" in html and "FLAGGED" in html


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (agreement_rows().drop(columns="observed_hi"), "lack column.*observed_hi"),
        (agreement_rows().head(0), "no stored A/B analysis"),
    ],
)
def test_agreement_refuses_bad_rows(frame: pd.DataFrame, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        agreement_summary(frame)
