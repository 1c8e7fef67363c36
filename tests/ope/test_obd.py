"""The Open Bandit Dataset sample bundled in obp: our loader, our estimators equal obp's on its
real logs, the cross-fitted reward model, the BTS evaluation end to end, and bad files refused
naming the file and the column."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ope import OpeBatch, OpeInputError, estimate_all
from ope.obd import (
    bts_action_dist,
    bundled_dir,
    design_of,
    evaluate_campaign,
    load_obd,
)
from ope.obp_reference import obp_counterparts
from ope.reward_model import cross_fit


@pytest.fixture(scope="module")
def random_men() -> object:
    return load_obd("random", "men")


@pytest.fixture(scope="module")
def bts_dist_men(random_men: object) -> np.ndarray:
    return bts_action_dist("men", random_men.n_items, random_men.len_list, n_sim=20_000)


def test_loader_reads_the_bundled_sample(random_men: object) -> None:
    log = random_men
    assert log.n_rows == 10_000
    assert log.n_items == 34 and log.len_list == 3
    assert set(np.unique(log.position)) == {0, 1, 2}
    assert np.allclose(log.pscore, 1.0 / 34.0)  # uniform over items, per position
    assert set(np.unique(log.reward)) == {0.0, 1.0}
    assert 10 < log.reward.sum() < 200  # clicks are rare
    assert log.affinity.shape == (10_000, 34)
    bts = load_obd("bts", "men")
    assert np.all((bts.pscore > 0) & (bts.pscore <= 1)) and bts.pscore.std() > 0


def test_bts_action_dist_is_a_distribution_per_position(bts_dist_men: np.ndarray) -> None:
    assert bts_dist_men.shape == (34, 3)
    assert np.allclose(bts_dist_men.sum(axis=0), 1.0)
    assert bts_dist_men.max() > 3.0 / 34.0  # BTS is far from uniform


def test_our_estimators_equal_obps_on_the_real_logs(
    random_men: object, bts_dist_men: np.ndarray
) -> None:
    """One reward model fitted on all rows; q̂ for every item at each row's position."""
    from sklearn.linear_model import LogisticRegression

    log = random_men
    design = design_of(log)
    rows = np.arange(log.n_rows)
    model = LogisticRegression(max_iter=2000).fit(design(rows, log.action), log.reward)
    q = np.zeros((log.n_rows, log.n_items, log.len_list))
    for a in range(log.n_items):
        q[rows, a, log.position] = model.predict_proba(design(rows, np.full(log.n_rows, a)))[:, 1]
    action_dist = np.zeros_like(q)
    action_dist[:] = bts_dist_men[None, :, :]
    q_at_position = q[rows, :, log.position]  # (n, n_items)
    ours = estimate_all(
        OpeBatch.from_arrays(
            reward=log.reward,
            pscore=log.pscore,
            target_pscore=bts_dist_men[log.action, log.position],
            q_hat=q_at_position[rows, log.action],
            v_hat=(bts_dist_men[:, log.position].T * q_at_position).sum(axis=1),
        )
    )
    for name, estimator in obp_counterparts().items():
        expected = estimator.estimate_policy_value(
            reward=log.reward,
            action=log.action,
            position=log.position,
            pscore=log.pscore,
            action_dist=action_dist,
            estimated_rewards_by_reg_model=q,
        )
        assert ours[name].value == pytest.approx(expected, rel=1e-9), name


def test_bts_evaluation_runs_end_to_end_with_finite_relative_errors() -> None:
    result = evaluate_campaign("women", n_runs=1)
    assert result.truth == pytest.approx(load_obd("bts", "women").reward.mean())
    summary = result.summary()
    assert set(summary) == {"ipw", "snipw", "dm", "dr", "sndr", "dros", "switch-dr"}
    for name, s in summary.items():
        assert np.isfinite(s["mean"]) and s["mean"] < 2.0, (name, s)


# ---- the cross-fitted reward model -------------------------------------------------------


def logistic_world(n: int = 4000, n_actions: int = 5, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    coef = np.linspace(-1.5, 1.5, n_actions)
    truth = 1.0 / (1.0 + np.exp(-(x[:, None] * coef[None, :] - 0.5)))  # (n, n_actions)
    action = rng.integers(n_actions, size=n)
    reward = (rng.random(n) < truth[np.arange(n), action]).astype(float)
    return {"x": x, "truth": truth, "action": action, "reward": reward}


def interactions(x: np.ndarray, n_actions: int):
    one_hot = np.eye(n_actions)

    def design(rows: np.ndarray, actions: np.ndarray) -> np.ndarray:
        return np.column_stack([one_hot[actions], one_hot[actions] * x[rows, None]])

    return design


def test_cross_fit_recovers_the_reward_function_and_averages_it_over_the_target() -> None:
    w = logistic_world()
    n = w["x"].size
    target = np.full((n, 5), 0.2)
    fit = cross_fit(
        interactions(w["x"], 5), reward=w["reward"], action=w["action"], target=target, seed=1
    )
    rows = np.arange(n)
    assert np.corrcoef(fit.q_hat, w["truth"][rows, w["action"]])[0, 1] > 0.95
    assert np.corrcoef(fit.v_hat, w["truth"].mean(axis=1))[0, 1] > 0.9
    assert set(np.unique(fit.fold)) == {0, 1, 2} and fit.constant_folds == 0
    one_hot = np.eye(5)[w["action"]]  # target = the logged action: v_hat is q_hat
    same = cross_fit(
        interactions(w["x"], 5), reward=w["reward"], action=w["action"], target=one_hot, seed=1
    )
    assert np.allclose(same.v_hat, same.q_hat)


def test_a_fold_without_clicks_gets_its_smoothed_rate_instead_of_failing() -> None:
    n = 300
    reward = np.zeros(n)
    reward[0] = 1.0  # one click: at least one training fold has none
    fit = cross_fit(
        lambda rows, actions: np.column_stack([actions, rows % 7]).astype(float),
        reward=reward,
        action=np.arange(n) % 3,
        target=np.full((n, 3), 1.0 / 3.0),
        n_folds=3,
    )
    assert fit.constant_folds >= 1
    assert np.all(np.isfinite(fit.q_hat)) and np.all((fit.q_hat > 0) & (fit.q_hat < 0.05))


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"reward": np.full(10, 0.5)}, "reward must be binary"),
        ({"action": np.arange(9)}, "action must have 10 rows"),
        ({"action": np.full(10, 3)}, r"action must be in \[0, 3\)"),
        ({"target": np.ones((9, 3))}, r"target must be \(n_rows=10, n_actions\)"),
        ({"n_folds": 1}, r"n_folds must be an int in \[2, n_rows\]"),
        ({"model": "forest"}, "model must be one of logistic, gbdt"),
    ],
)
def test_cross_fit_refuses_bad_input(change: dict, match: str) -> None:
    kwargs = {
        "reward": np.array([0, 1] * 5, dtype=float),
        "action": np.arange(10) % 3,
        "target": np.full((10, 3), 1.0 / 3.0),
        "n_folds": 2,
        "model": "logistic",
    }
    kwargs.update(change)
    with pytest.raises(ValueError, match=match):
        cross_fit(lambda rows, actions: np.column_stack([actions]).astype(float), **kwargs)


# ---- bad files -----------------------------------------------------------------------------


def copy_campaign(tmp_path: Path, campaign: str = "men") -> Path:
    for policy in ("random", "bts"):
        shutil.copytree(bundled_dir() / policy / campaign, tmp_path / policy / campaign)
    return tmp_path / "random" / campaign / f"{campaign}.csv"


def edit(path: Path, mutate: Callable[[pd.DataFrame], pd.DataFrame]) -> None:
    mutate(pd.read_csv(path, index_col=0)).to_csv(path)


def set_value(row: int, column: str, value: float) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def mutate(frame: pd.DataFrame) -> pd.DataFrame:
        frame.loc[row, column] = value
        return frame

    return mutate


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda f: f.drop(columns="click"), "lacks column.*click"),
        (lambda f: f.drop(columns="user-item_affinity_3"), "user-item_affinity_3"),
        (set_value(5, "item_id", 99), r"item_id must be in \[0, 34\); got 99 at row 5"),
        (set_value(7, "click", 2), "click must be 0 or 1; got 2.0 at row 7"),
    ],
)
def test_bad_log_files_are_refused_naming_the_file_and_column(
    tmp_path: Path, mutate, match: str
) -> None:
    path = copy_campaign(tmp_path)
    edit(path, mutate)
    with pytest.raises(OpeInputError, match=match) as error:
        load_obd("random", "men", data_dir=tmp_path)
    assert "men.csv" in str(error.value)


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        (("uniform", "men"), ValueError, "policy must be one of random, bts"),
        (("random", "kids"), ValueError, "campaign must be one of all, men, women"),
        (("random", "all"), FileNotFoundError, "does not exist"),
    ],
)
def test_bad_names_and_missing_files_raise(
    tmp_path: Path, args: tuple[str, str], error: type, match: str
) -> None:
    copy_campaign(tmp_path)
    with pytest.raises(error, match=match):
        load_obd(*args, data_dir=tmp_path)
