"""DM, DR, SNDR, DRos, Switch-DR and clipped IPS: equal to obp 0.4.1's point estimates on
obp's synthetic problems, DR unbiased with an honest interval where a biased reward model makes
DM wrong, and bad q_hat / v_hat refused naming the column and the row."""

from __future__ import annotations

from collections.abc import Callable
from statistics import NormalDist

import numpy as np
import pandas as pd
import pytest
from obp.dataset import SyntheticBanditDataset, linear_behavior_policy
from obp.ope import (
    DirectMethod,
    DoublyRobust,
    DoublyRobustWithShrinkage,
    InverseProbabilityWeighting,
    SelfNormalizedDoublyRobust,
    SelfNormalizedInverseProbabilityWeighting,
    SwitchDoublyRobust,
)
from ope_inputs import good_columns

from ope import (
    DM,
    DR,
    IPS,
    SNDR,
    SNIPS,
    ClippedIPS,
    DRos,
    Estimator,
    OpeBatch,
    OpeInputError,
    SwitchDR,
    estimate_all,
)

Z95 = NormalDist().inv_cdf(0.975)
N_ACTIONS = 10


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# ---- obp's dense problems, and our per-row view of them ------------------------------------------

# obp's default behavior policy is uniform (pscore = 0.1, weights <= 10); the linear one gives
# pscores down to ~0.06, so that clipping at 10 binds on some rows.
PROBLEMS = [
    pytest.param((1, None), id="seed1-uniform-logging"),
    pytest.param((7, linear_behavior_policy), id="seed7-linear-logging"),
    pytest.param((12, linear_behavior_policy), id="seed12-linear-logging"),
    pytest.param((23, linear_behavior_policy), id="seed23-linear-logging"),
]


@pytest.fixture(scope="module", params=PROBLEMS)
def problem(request: pytest.FixtureRequest) -> dict:
    """obp bandit feedback with a softmax target ``action_dist`` and a noisy reward model ``q``,
    both (n, n_actions, 1)."""
    seed, behavior = request.param
    dataset = SyntheticBanditDataset(
        n_actions=N_ACTIONS,
        reward_type="binary",
        behavior_policy_function=behavior,
        random_state=seed,
    )
    feedback = dataset.obtain_batch_bandit_feedback(n_rounds=2000)
    n = feedback["n_rounds"]
    rng = np.random.default_rng(seed)
    action_dist = softmax(rng.normal(scale=1.5, size=(n, N_ACTIONS)))[:, :, None]
    q = feedback["expected_reward"] + rng.normal(scale=0.1, size=(n, N_ACTIONS))
    return {**feedback, "action_dist": action_dist, "q": q[:, :, None]}


def per_row(p: dict) -> dict[str, np.ndarray]:
    """DESIGN §5 columns from obp's dense arrays, at position 0."""
    rows = np.arange(p["n_rounds"])
    return {
        "reward": p["reward"],
        "pscore": p["pscore"],
        "target_pscore": p["action_dist"][rows, p["action"], 0],
        "q_hat": p["q"][rows, p["action"], 0],
        "v_hat": (p["action_dist"][:, :, 0] * p["q"][:, :, 0]).sum(axis=1),
    }


def obp_inputs(p: dict, action_dist: np.ndarray | None = None) -> dict[str, np.ndarray]:
    return {
        "reward": p["reward"],
        "action": p["action"],
        "pscore": p["pscore"],
        "action_dist": p["action_dist"] if action_dist is None else action_dist,
        "estimated_rewards_by_reg_model": p["q"],
    }


PAIRS = [
    pytest.param(IPS, InverseProbabilityWeighting, id="ipw"),
    pytest.param(SNIPS, SelfNormalizedInverseProbabilityWeighting, id="snipw"),
    pytest.param(DM, DirectMethod, id="dm"),
    pytest.param(DR, DoublyRobust, id="dr"),
    pytest.param(SNDR, SelfNormalizedDoublyRobust, id="sndr"),
    *[
        pytest.param(
            lambda lam=lam: DRos(lambda_=lam),
            lambda lam=lam: DoublyRobustWithShrinkage(lambda_=lam),
            id=f"dros-lambda{lam}",
        )
        for lam in (1.0, 10.0, 1000.0)
    ],
    *[
        pytest.param(
            lambda tau=tau: SwitchDR(tau=tau),
            lambda tau=tau: SwitchDoublyRobust(tau=tau),
            id=f"switch-dr-tau{tau}",
        )
        for tau in (1.0, 5.0, 100.0)
    ],
]


@pytest.mark.parametrize(("ours", "theirs"), PAIRS)
def test_point_estimate_equals_obp(
    problem: dict, ours: Callable[[], Estimator], theirs: Callable[[], object]
) -> None:
    expected = theirs().estimate_policy_value(**obp_inputs(problem))
    ours_ = ours()
    estimate = ours_.estimate(OpeBatch.from_arrays(**per_row(problem)))
    assert np.isfinite(expected)
    assert estimate.value == pytest.approx(expected, rel=1e-9, abs=0.0)
    # Our names are obp's, except obp's "dr-os".
    assert ours_.name == {"dr-os": "dros"}.get(theirs().estimator_name, theirs().estimator_name)
    assert estimate.lo < estimate.value < estimate.hi


@pytest.mark.parametrize("lam", [2.0, 10.0])
def test_clipped_ips_equals_obp_ipw_on_the_clipped_policy(problem: dict, lam: float) -> None:
    # obp 0.4.1 has no clipping (InverseProbabilityWeighting(lambda_=...) came later), so give
    # its IPW a target that puts min(π_e(a_i), λ π_0(a_i)) on the logged action (the rest of the
    # mass on another action, which IPW never reads): its weight is then exactly min(w, λ).
    with pytest.raises(TypeError):
        InverseProbabilityWeighting(lambda_=lam)
    p = problem
    rows = np.arange(p["n_rounds"])
    clipped = p["action_dist"].copy()
    logged = clipped[rows, p["action"], 0]
    kept = np.minimum(logged, lam * p["pscore"])
    clipped[rows, p["action"], 0] = kept
    clipped[rows, (p["action"] + 1) % N_ACTIONS, 0] += logged - kept
    expected = InverseProbabilityWeighting().estimate_policy_value(**obp_inputs(p, clipped))

    batch = OpeBatch.from_arrays(**per_row(p))
    estimate = ClippedIPS(lambda_=lam).estimate(batch)
    assert estimate.value == pytest.approx(expected, rel=1e-9, abs=0.0)
    w = batch.weight
    assert estimate.value == pytest.approx(np.mean(np.minimum(w, lam) * p["reward"]), rel=1e-12)
    assert estimate.diagnostics["clipped_share"] == np.mean(w > lam)
    assert ClippedIPS(lambda_=np.inf).estimate(batch).value == IPS().estimate(batch).value


def test_the_hyperparameters_bind_on_these_problems(problem: dict) -> None:
    """The λ/τ grid is not vacuous: clipping and switching change some rows."""
    batch = OpeBatch.from_arrays(**per_row(problem))
    w = batch.weight
    assert 0.0 < np.mean(w > 2.0) < 0.5 and 0.0 < np.mean(w > 5.0) < np.mean(w > 1.0)
    dr = DR().estimate(batch).value
    for tau in (1.0, 5.0):
        switch = SwitchDR(tau=tau).estimate(batch)
        assert switch.value != dr
        assert switch.diagnostics["switched_share"] == np.mean(w > tau) > 0.0
    assert SwitchDR(tau=100.0).estimate(batch).value == pytest.approx(dr, rel=1e-12)
    shrunk = [DRos(lambda_=lam).estimate(batch).value for lam in (1.0, 10.0, 1000.0)]
    assert len(set(shrunk)) == 3 and dr not in shrunk


# ---- edge cases of the hyperparameters, against obp ---------------------------------------------


def tiny_problem(target: list[float]) -> dict:
    """4 actions, uniform logging (pscore 0.25), the same target for every round, actions 0..3
    twice: weights are 4 π_e(a) exactly."""
    n = 8
    action = np.tile(np.arange(4), 2)
    rng = np.random.default_rng(0)
    return {
        "n_rounds": n,
        "action": action,
        "reward": (rng.random(n) < 0.5).astype(float),
        "pscore": np.full(n, 0.25),
        "action_dist": np.tile(np.array(target)[None, :, None], (n, 1, 1)),
        "q": rng.uniform(0.2, 0.8, (n, 4, 1)),
    }


def test_switch_dr_keeps_the_dr_term_when_the_weight_equals_tau() -> None:
    p = tiny_problem([0.5, 0.3, 0.1, 0.1])  # weights 2.0, 1.2, 0.4, 0.4
    batch = OpeBatch.from_arrays(**per_row(p))
    assert batch.weight[0] == 2.0
    at = SwitchDR(tau=2.0).estimate(batch)
    assert at.value == pytest.approx(DR().estimate(batch).value, rel=1e-12)
    assert at.diagnostics["switched_share"] == 0.0
    below = SwitchDR(tau=1.999).estimate(batch)
    assert below.value != at.value and below.diagnostics["switched_share"] == 0.25
    for tau in (2.0, 1.999, 0.0):
        expected = SwitchDoublyRobust(tau=tau).estimate_policy_value(**obp_inputs(p))
        assert SwitchDR(tau=tau).estimate(batch).value == pytest.approx(expected, rel=1e-12)
    assert SwitchDR(tau=0.0).estimate(batch).value == pytest.approx(
        DM().estimate(batch).value, rel=1e-12
    )


def test_dros_at_lambda_zero_is_dm_and_at_infinity_is_dr() -> None:
    p = tiny_problem([0.5, 0.3, 0.2, 0.0])  # the rows with action 3 have weight 0
    batch = OpeBatch.from_arrays(**per_row(p))
    dm, dr = DM().estimate(batch).value, DR().estimate(batch).value
    assert DRos(lambda_=0.0).estimate(batch).value == pytest.approx(dm, rel=1e-12)
    assert DRos(lambda_=np.inf).estimate(batch).value == pytest.approx(dr, rel=1e-12)
    assert DRos(lambda_=1e12).estimate(batch).value == pytest.approx(dr, rel=1e-9)
    # obp 0.4.1 computes λw / (w² + λ) as written: 0/0 at λ = 0 where w = 0, inf/inf at λ = inf.
    with np.errstate(invalid="ignore"):
        assert np.isnan(
            DoublyRobustWithShrinkage(lambda_=0.0).estimate_policy_value(**obp_inputs(p))
        )
        assert np.isnan(
            DoublyRobustWithShrinkage(lambda_=np.inf).estimate_policy_value(**obp_inputs(p))
        )
    # Where every w > 0, obp's λ = 0 is DM too.
    q = tiny_problem([0.4, 0.3, 0.2, 0.1])
    expected = DoublyRobustWithShrinkage(lambda_=0.0).estimate_policy_value(**obp_inputs(q))
    batch = OpeBatch.from_arrays(**per_row(q))
    assert DRos(lambda_=0.0).estimate(batch).value == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    "make",
    [
        lambda: DRos(lambda_=-1.0),
        lambda: DRos(lambda_=float("nan")),
        lambda: SwitchDR(tau=-0.5),
        lambda: SwitchDR(tau="5"),
        lambda: ClippedIPS(lambda_=True),
        lambda: ClippedIPS(lambda_=float("nan")),
    ],
)
def test_bad_hyperparameters_raise(make: Callable[[], Estimator]) -> None:
    with pytest.raises(ValueError, match=r"(lambda_|tau) must be"):
        make()


# ---- our interval is the normal one, not obp's bootstrap ----------------------------------------


def test_interval_is_normal_over_rounds_not_obps_bootstrap(problem: dict) -> None:
    p = problem
    batch = OpeBatch.from_arrays(**per_row(p))
    estimate = DR().estimate(batch)
    inputs = obp_inputs(p)
    terms = DoublyRobust()._estimate_round_rewards(
        **inputs, position=np.zeros(p["n_rounds"], dtype=int)
    )
    half = Z95 * terms.std(ddof=1) / np.sqrt(terms.size)
    assert estimate.hi - estimate.value == pytest.approx(half, rel=1e-9)
    assert estimate.value - estimate.lo == pytest.approx(half, rel=1e-9)
    # obp's estimate_interval is a percentile bootstrap of the same terms: close to ours.
    boot = DoublyRobust().estimate_interval(**inputs, n_bootstrap_samples=2000, random_state=0)
    lo, hi = boot["95.0% CI (lower)"], boot["95.0% CI (upper)"]
    assert abs(lo - estimate.lo) < 0.15 * half and abs(hi - estimate.hi) < 0.15 * half


# ---- which estimators run ------------------------------------------------------------------------


def test_estimate_all_runs_every_estimator_the_columns_allow(problem: dict) -> None:
    cols = per_row(problem)
    bare = {k: v for k, v in cols.items() if k not in ("q_hat", "v_hat")}
    assert set(estimate_all(OpeBatch.from_arrays(**bare))) == {"ipw", "snipw"}
    with_v = OpeBatch.from_arrays(**bare, v_hat=cols["v_hat"])
    assert list(estimate_all(with_v)) == ["ipw", "snipw", "dm"]
    with_q = OpeBatch.from_arrays(**bare, q_hat=cols["q_hat"])
    assert list(estimate_all(with_q)) == ["ipw", "snipw"]
    batch = OpeBatch.from_arrays(**cols)
    everything = estimate_all(batch, dros_lambda=10.0, switch_tau=5.0, clip=2.0)
    assert list(everything) == [
        "ipw", "snipw", "clipped-ipw", "dm", "dr", "sndr", "dros", "switch-dr"
    ]  # fmt: skip
    assert everything["dros"].value == DRos(lambda_=10.0).estimate(batch).value
    assert everything["switch-dr"].value == SwitchDR(tau=5.0).estimate(batch).value
    assert everything["clipped-ipw"].value == ClippedIPS(lambda_=2.0).estimate(batch).value
    defaults = estimate_all(batch)
    assert "clipped-ipw" not in defaults
    assert defaults["dros"].value == DRos(lambda_=1.0).estimate(batch).value
    assert defaults["switch-dr"].value == SwitchDR(tau=1.0).estimate(batch).value
    with pytest.raises(ValueError, match="tau must be"):
        estimate_all(OpeBatch.from_arrays(**bare), switch_tau=-1.0)


@pytest.mark.parametrize(
    ("estimator", "drop", "match"),
    [
        (DM(), ("v_hat",), r"dm needs column\(s\) v_hat, which the input lacks"),
        (DR(), ("q_hat", "v_hat"), r"dr needs column\(s\) q_hat, v_hat"),
        (SNDR(), ("q_hat",), r"sndr needs column\(s\) q_hat\b"),
        (DRos(), ("v_hat",), r"dros needs column\(s\) v_hat"),
        (SwitchDR(), ("q_hat",), r"switch-dr needs column\(s\) q_hat"),
    ],
)
def test_model_based_estimators_name_the_missing_columns(
    estimator: Estimator, drop: tuple[str, ...], match: str
) -> None:
    cols = {k: v for k, v in good_columns().items() if k not in drop}
    with pytest.raises(OpeInputError, match=match):
        estimator.estimate(OpeBatch.from_arrays(**cols))


# ---- DR is unbiased with honest intervals where DM is biased ------------------------------------

MEANS = np.array([[0.2, 0.5, 0.7], [0.6, 0.3, 0.1]])  # Bernoulli mean of (context, action)
LOGGING = np.array([[0.5, 0.25, 0.25], [0.2, 0.4, 0.4]])
TARGET = np.array([[0.1, 0.2, 0.7], [0.5, 0.3, 0.2]])
TRUTH = float(0.5 * (TARGET * MEANS).sum())  # two contexts, equally likely: 0.51
Q_BIASED = MEANS + np.array([[0.15, -0.1, 0.2], [0.1, 0.2, 0.15]])  # a wrong reward model


def replicate(rng: np.random.Generator, n: int) -> OpeBatch:
    context = rng.integers(2, size=n)
    action = (rng.random((n, 1)) > LOGGING[context].cumsum(axis=1)).sum(axis=1)
    return OpeBatch.from_arrays(
        reward=(rng.random(n) < MEANS[context, action]).astype(float),
        pscore=LOGGING[context, action],
        target_pscore=TARGET[context, action],
        q_hat=Q_BIASED[context, action],
        v_hat=(TARGET * Q_BIASED).sum(axis=1)[context],
    )


@pytest.fixture(scope="module")
def replications() -> list[OpeBatch]:
    rng = np.random.default_rng(2024)
    return [replicate(rng, 500) for _ in range(300)]


@pytest.mark.parametrize("estimator", [DR(), SNDR()], ids=["dr", "sndr"])
def test_dr_is_unbiased_and_covers_with_a_biased_reward_model(
    replications: list[OpeBatch], estimator: Estimator
) -> None:
    estimates = [estimator.estimate(b) for b in replications]
    values = np.array([e.value for e in estimates])
    se_of_mean = values.std(ddof=1) / np.sqrt(values.size)
    assert abs(values.mean() - TRUTH) < 4 * se_of_mean, (values.mean(), se_of_mean)
    covered = np.mean([e.lo <= TRUTH <= e.hi for e in estimates])
    # 95% nominal; binomial sd over 300 reps is 0.013. Observed: 0.937 (DR), 0.927 (SNDR).
    assert 0.90 <= covered <= 0.99, covered
    mean_half_width = np.mean([(e.hi - e.lo) / 2 for e in estimates])
    assert mean_half_width / Z95 == pytest.approx(values.std(ddof=1), rel=0.15)


def test_dm_is_biased_with_the_same_reward_model(replications: list[OpeBatch]) -> None:
    bias = 0.5 * (TARGET * (Q_BIASED - MEANS)).sum()  # 0.1375
    values = np.array([DM().estimate(b).value for b in replications])
    se_of_mean = values.std(ddof=1) / np.sqrt(values.size)
    assert values.mean() - TRUTH == pytest.approx(bias, abs=4 * se_of_mean)
    assert abs(values.mean() - TRUTH) > 20 * se_of_mean
    covered = np.mean([(e := DM().estimate(b)).lo <= TRUTH <= e.hi for b in replications])
    assert covered < 0.05  # observed: 0.0


# ---- slates: DR and SNDR per (decision, slot) ----------------------------------------------------


def test_slate_dr_sums_slots_and_sndr_normalizes_each_slot() -> None:
    rng = np.random.default_rng(5)
    n_decisions, k = 200, 3
    frame = pd.DataFrame(
        {
            "decision_id": np.repeat(np.arange(n_decisions), k),
            "slot": np.tile(np.arange(k), n_decisions),
            "reward": (rng.random(n_decisions * k) < 0.3).astype(float),
            "pscore": rng.uniform(0.05, 1.0, n_decisions * k),
            "target_pscore": rng.uniform(0.0, 1.0, n_decisions * k),
            "q_hat": rng.uniform(0.0, 0.6, n_decisions * k),
            "v_hat": rng.uniform(0.0, 0.6, n_decisions * k),
        }
    ).sample(frac=1.0, random_state=1)
    batch = OpeBatch.from_frame(frame)
    w = frame.target_pscore / frame.pscore
    e = frame.reward - frame.q_hat
    dr = (frame.v_hat + w * e).groupby(frame.decision_id).sum()
    assert DR().estimate(batch).value == pytest.approx(dr.mean(), rel=1e-12)
    by_slot = (w * e).groupby(frame.slot).sum() / w.groupby(frame.slot).sum()
    sndr = frame.v_hat.sum() / n_decisions + by_slot.sum()
    assert SNDR().estimate(batch).value == pytest.approx(sndr, rel=1e-12)


# ---- bad q_hat / v_hat ---------------------------------------------------------------------------


@pytest.mark.parametrize("column", ["q_hat", "v_hat"])
def test_2d_model_column_raises(column: str) -> None:
    cols = good_columns()
    cols[column] = np.ones((10, 2))
    with pytest.raises(OpeInputError, match=rf"{column} must be 1-D"):
        OpeBatch.from_arrays(**cols)


def test_frame_reads_model_columns_when_present() -> None:
    cols = good_columns()
    batch = OpeBatch.from_frame(pd.DataFrame(cols))
    np.testing.assert_array_equal(batch.q_hat, cols["q_hat"])
    np.testing.assert_array_equal(batch.v_hat, cols["v_hat"])
    bare = OpeBatch.from_frame(pd.DataFrame(cols).drop(columns=["q_hat", "v_hat"]))
    assert bare.q_hat is None and bare.v_hat is None
