"""Slate estimators: standard, independent and reward-interaction IPS equal obp 0.4.1's on its
synthetic slate problems, stream like every estimator, and bad slate propensities are refused
naming the column and the row."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from obp.dataset import SyntheticSlateBanditDataset
from obp.ope import SlateIndependentIPS as ObpIIPS
from obp.ope import SlateRewardInteractionIPS as ObpRIPS
from obp.ope import SlateStandardIPS as ObpSIPS

from ope import Bounds, OpeBatch, OpeInputError, stream_estimates
from ope.slate import (
    SlateIndependentIPS,
    SlateRewardInteractionIPS,
    SlateStandardIPS,
    slate_estimators,
)

LEN_LIST = 3


@pytest.fixture(scope="module", params=["independent", "cascade_additive", "standard_additive"])
def slate_problem(request: pytest.FixtureRequest) -> dict:
    dataset = SyntheticSlateBanditDataset(
        n_unique_action=8,
        len_list=LEN_LIST,
        dim_context=2,
        reward_type="binary",
        reward_structure=request.param,
        random_state=3,
    )
    feedback = dataset.obtain_batch_bandit_feedback(n_rounds=600)
    rng = np.random.default_rng(4)
    logit = rng.normal(size=(600, 8))
    slate, marginal, cascade = dataset.obtain_pscore_given_evaluation_policy_logit(
        action=feedback["action"], evaluation_policy_logit_=logit
    )
    return {
        **feedback,
        "target_slate": slate,
        "target_marginal": marginal,
        "target_cascade": cascade,
    }


def frame_of(p: dict) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "decision_id": p["slate_id"],
            "slot": p["position"],
            "reward": p["reward"],
            "pscore": p["pscore_item_position"],
            "target_pscore": p["target_marginal"],
            "pscore_slate": p["pscore"],
            "target_pscore_slate": p["target_slate"],
            "pscore_cascade": p["pscore_cascade"],
            "target_pscore_cascade": p["target_cascade"],
        }
    )


def test_slate_estimators_equal_obp(slate_problem: dict) -> None:
    p = slate_problem
    batch = OpeBatch.from_frame(frame_of(p))
    common = {"slate_id": p["slate_id"], "reward": p["reward"], "position": p["position"]}
    expected = {
        "sips": ObpSIPS(len_list=LEN_LIST).estimate_policy_value(
            **common, pscore=p["pscore"], evaluation_policy_pscore=p["target_slate"]
        ),
        "iips": ObpIIPS(len_list=LEN_LIST).estimate_policy_value(
            **common,
            pscore_item_position=p["pscore_item_position"],
            evaluation_policy_pscore_item_position=p["target_marginal"],
        ),
        "rips": ObpRIPS(len_list=LEN_LIST).estimate_policy_value(
            **common,
            pscore_cascade=p["pscore_cascade"],
            evaluation_policy_pscore_cascade=p["target_cascade"],
        ),
    }
    for estimator in (SlateStandardIPS(), SlateIndependentIPS(), SlateRewardInteractionIPS()):
        got = estimator.estimate(batch)
        assert got.value == pytest.approx(expected[estimator.name], rel=1e-9), estimator.name
        assert got.lo < got.value < got.hi


def test_standard_ips_diagnostics_describe_the_slate_weights(slate_problem: dict) -> None:
    p = slate_problem
    batch = OpeBatch.from_frame(frame_of(p))
    sips = SlateStandardIPS().estimate(batch).diagnostics
    iips = SlateIndependentIPS().estimate(batch).diagnostics
    w = p["target_slate"] / p["pscore"]
    assert sips["max_weight"] == pytest.approx(w.max())
    assert sips["ess"] == pytest.approx(w.sum() ** 2 / np.sum(w**2))
    assert sips["max_weight"] > iips["max_weight"]  # whole-slate weights are the extreme ones


def test_slate_estimators_stream(slate_problem: dict) -> None:
    frame = frame_of(slate_problem)
    whole = stream_estimates([OpeBatch.from_frame(frame)], slate_estimators())
    cut = 3 * 250  # a decision boundary: three rows per slate
    parts = [OpeBatch.from_frame(frame.iloc[:cut]), OpeBatch.from_frame(frame.iloc[cut:])]
    streamed = stream_estimates(parts, slate_estimators())
    for name in ("sips", "iips", "rips"):
        assert streamed[name].value == pytest.approx(whole[name].value, rel=1e-10)
        assert streamed[name].hi == pytest.approx(whole[name].hi, rel=1e-10)


def test_without_slate_columns_only_the_independent_estimator_runs(slate_problem: dict) -> None:
    frame = frame_of(slate_problem)[["decision_id", "slot", "reward", "pscore", "target_pscore"]]
    assert set(stream_estimates([OpeBatch.from_frame(frame)], slate_estimators())) == {"iips"}
    with pytest.raises(OpeInputError, match=r"sips needs column.*pscore_slate"):
        SlateStandardIPS().estimate(OpeBatch.from_frame(frame))


def good_slate_columns() -> dict[str, np.ndarray]:
    return {
        "decision_id": np.array([0, 0, 1, 1]),
        "slot": np.array([0, 1, 0, 1]),
        "reward": np.array([1.0, 0.0, 0.0, 1.0]),
        "pscore": np.full(4, 0.5),
        "target_pscore": np.full(4, 0.5),
        "pscore_slate": np.array([0.2, 0.2, 0.1, 0.1]),
        "target_pscore_slate": np.array([0.3, 0.3, 0.0, 0.0]),
        "pscore_cascade": np.array([0.5, 0.2, 0.5, 0.1]),
        "target_pscore_cascade": np.array([0.6, 0.3, 0.1, 0.0]),
    }


@pytest.mark.parametrize(
    ("column", "row", "value", "match"),
    [
        ("pscore_slate", 2, 0.0, r"pscore_slate must be in \(0, 1\]; got 0.0 at row 2"),
        ("pscore_cascade", 1, 1.5, r"pscore_cascade must be in \(0, 1\]; got 1.5 at row 1"),
        ("target_pscore_slate", 3, -0.1, r"target_pscore_slate must be in \[0, 1\]"),
        ("target_pscore_cascade", 0, np.nan, r"target_pscore_cascade must be in \[0, 1\]"),
        ("pscore_slate", 1, 0.25, "pscore_slate must be the same on every row of a decision"),
        ("target_pscore_slate", 3, 0.5, "must be the same on every row of a decision; got 0.5"),
    ],
)
def test_bad_slate_propensities_name_column_and_row(
    column: str, row: int, value: float, match: str
) -> None:
    cols = good_slate_columns()
    cols[column] = cols[column].astype(float)
    cols[column][row] = value
    with pytest.raises(OpeInputError, match=match):
        OpeBatch.from_frame(pd.DataFrame(cols))


@pytest.mark.parametrize(
    ("drop", "match"),
    [
        ("target_pscore_slate", "pscore_slate must come with|target_pscore_slate must come with"),
        ("pscore_cascade", "pscore_cascade must come with target_pscore_cascade"),
    ],
)
def test_a_slate_propensity_without_its_pair_is_refused(drop: str, match: str) -> None:
    frame = pd.DataFrame(good_slate_columns()).drop(columns=drop)
    with pytest.raises(OpeInputError, match=match):
        OpeBatch.from_frame(frame)


def test_whole_slate_and_prefix_ips_have_bernstein_intervals_bounded_by_their_own_weights(
    slate_problem: dict,
) -> None:
    """sips and rips are means of bounded terms too: their weights are at most 1 / the smallest
    logged slate (or prefix) propensity, not 1 / the smallest marginal."""
    p = slate_problem
    batch = OpeBatch.from_frame(frame_of(p))
    for estimator, logged in (
        (SlateStandardIPS(), p["pscore"]),
        (SlateRewardInteractionIPS(), p["pscore_cascade"]),
    ):
        assert estimator.has_bernstein
        normal = estimator.estimate(batch)
        bernstein = estimator.estimate(batch, interval="bernstein")
        assert bernstein.value == normal.value
        assert bernstein.lo <= normal.lo and normal.hi <= bernstein.hi, estimator.name
        partial = estimator.partial(batch)
        assert partial.min_pscore == pytest.approx(np.min(logged))
        too_small = Bounds(weight_max=0.5 * partial.weights.max_weight)
        with pytest.raises(ValueError, match="weight_max"):
            estimator.estimate(batch, interval="bernstein", bounds=too_small)
