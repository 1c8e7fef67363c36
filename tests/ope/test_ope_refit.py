"""The bootstrap that refits the reward model in every replicate: deterministic for a seed, wider
than the fixed-model bootstrap where the model matters (DM on a small sample), resampling whole
slates, and bad input is refused naming the column and the row."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from loop.coverage_world import CoverageWorld, CoverageWorldConfig
from ope import DM, OpeBatch, OpeInputError, estimate_all
from ope.refit import INTERVAL, DecisionRows, estimate_with_refit
from ope.reward_model import Classifier, cross_fit

N, D, A = 200, 4, 3


def liblinear() -> Classifier:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(solver="liblinear")


class Problem:
    """Uniform logging over A actions, clicks from a logistic model of context × action, and a
    softmax target; the reward model sees the context crossed with the action."""

    def __init__(self, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.x = rng.normal(size=(N, D))
        p_click = 1.0 / (1.0 + np.exp(-(self.x @ rng.normal(size=(D, A)) - 1.0)))  # (N, A)
        self.action = rng.integers(A, size=N)
        rows = np.arange(N)
        self.reward = (rng.random(N) < p_click[rows, self.action]).astype(float)
        logits = self.x @ rng.normal(size=(D, A))
        self.target = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        self.batch = OpeBatch.from_arrays(
            reward=self.reward,
            pscore=np.full(N, 1.0 / A),
            target_pscore=self.target[rows, self.action],
        )

    def design(self, rows: np.ndarray, actions: np.ndarray) -> np.ndarray:
        onehot = np.eye(A)[actions]  # (m, A)
        crossed = (self.x[rows][:, :, None] * onehot[:, None, :]).reshape(len(rows), -1)
        return np.hstack([crossed, onehot])


@pytest.fixture(scope="module")
def problem() -> Problem:
    return Problem()


def refit(problem: Problem, **options: object) -> dict:
    return estimate_with_refit(
        problem.batch,
        design=problem.design,
        action=problem.action,
        target=problem.target,
        model=liblinear,
        **options,  # type: ignore[arg-type]
    )


def test_refit_bootstrap_is_deterministic_for_a_seed(problem: Problem) -> None:
    first = refit(problem, n_bootstrap=8, seed=3)
    again = refit(problem, n_bootstrap=8, seed=3)
    other = refit(problem, n_bootstrap=8, seed=4)
    assert set(first) == {"dm", "dr", "sndr", "dros", "switch-dr"}
    for name, e in first.items():
        assert (e.value, e.lo, e.hi) == (again[name].value, again[name].lo, again[name].hi)
        assert e.interval == INTERVAL and e.diagnostics["refit_replicates"] == 8
    assert other["dm"].lo != first["dm"].lo


def test_refit_interval_is_wider_than_the_fixed_model_bootstrap_for_dm(problem: Problem) -> None:
    refitted = refit(problem, n_bootstrap=60, seed=1)["dm"]
    fit = cross_fit(
        problem.design, reward=problem.reward, action=problem.action, target=problem.target,
        model=liblinear, seed=1,
    )  # fmt: skip
    fixed_batch = OpeBatch.from_arrays(
        reward=problem.reward,
        pscore=problem.batch.pscore,
        target_pscore=problem.batch.target_pscore,
        q_hat=fit.q_hat,
        v_hat=fit.v_hat,
    )
    fixed = DM().estimate(fixed_batch, interval="bootstrap", n_bootstrap=60, seed=1)
    assert refitted.value == pytest.approx(fixed.value, rel=1e-12)  # the same full-data model
    assert refitted.lo <= refitted.value <= refitted.hi
    assert refitted.hi - refitted.lo > 1.2 * (fixed.hi - fixed.lo)
    assert "dm" in estimate_all(fixed_batch)  # the fixed-model path is the ordinary one


BadInput = Callable[[Problem], dict]


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (
            lambda p: {"target": np.roll(p.target, 1, axis=1)},
            r"target at the logged action must equal target_pscore; got .* at row 0",
        ),
        (lambda p: {"action": p.action[:-1]}, rf"action must have {N} rows like reward"),
        (lambda p: {"target": p.target[:, :1]}, r"action must be in \[0, 1\)"),
    ],
)
def test_bad_refit_input_is_refused(problem: Problem, mutate: BadInput, match: str) -> None:
    args = {"design": problem.design, "action": problem.action, "target": problem.target}
    args |= mutate(problem)
    with pytest.raises(OpeInputError, match=match):
        estimate_with_refit(problem.batch, n_bootstrap=2, **args)  # type: ignore[arg-type]


def test_refit_resamples_whole_slates() -> None:
    config = CoverageWorldConfig(seed=4, pool_requests=100, decisions=150, candidates=5, k=3)
    run = CoverageWorld(config).run(0)
    assert run.reward_model is not None
    inputs = run.reward_model
    estimates = estimate_with_refit(
        run.batch, design=inputs.design, action=inputs.action, target=inputs.target,
        model=inputs.model, n_bootstrap=6, seed=2,
    )  # fmt: skip
    for e in estimates.values():
        assert e.lo <= e.hi and np.isfinite(e.value) and e.n_decisions == 150
    rows, decision = DecisionRows(run.batch.decision).draw(np.random.default_rng(0))
    assert rows.size == decision.size == 3 * 150
    # every replicate decision holds one logged decision's three slots, in order
    original = run.batch.decision[rows].reshape(150, 3)
    assert np.all(original == original[:, :1])
    assert np.all(run.batch.slot[rows].reshape(150, 3) == np.arange(3))
