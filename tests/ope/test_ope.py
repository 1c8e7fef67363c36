"""OPE: IPS and SNIPS agree with obp, are unbiased with honest intervals on a problem with a
known value, handle slates row-per-(decision, slot), and refuse bad input naming column and row."""

from __future__ import annotations

from statistics import NormalDist

import numpy as np
import pandas as pd
import pytest
from obp.dataset import SyntheticBanditDataset
from obp.ope import InverseProbabilityWeighting, SelfNormalizedInverseProbabilityWeighting
from ope_inputs import drop_last, good_columns, with_value

from explore import EpsilonGreedySlate
from ope import IPS, SNIPS, OpeBatch, OpeInputError, estimate_all
from ope.replay import target_marginals

Z95 = NormalDist().inv_cdf(0.975)


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# ---- agreement with obp 0.4.1 ---------------------------------------------------------------


@pytest.fixture(scope="module")
def obp_problem() -> dict[str, np.ndarray]:
    dataset = SyntheticBanditDataset(n_actions=10, reward_type="binary", random_state=12)
    feedback = dataset.obtain_batch_bandit_feedback(n_rounds=5000)
    n = feedback["n_rounds"]
    logits = np.random.default_rng(3).normal(scale=1.5, size=(n, 10))
    action_dist = softmax(logits)[:, :, None]  # (n, n_actions, len_list=1)
    truth = dataset.calc_ground_truth_policy_value(
        expected_reward=feedback["expected_reward"], action_dist=action_dist
    )
    return {**feedback, "action_dist": action_dist, "truth": truth}


def our_batch(problem: dict) -> OpeBatch:
    n = problem["n_rounds"]
    return OpeBatch.from_arrays(
        reward=problem["reward"],
        pscore=problem["pscore"],
        target_pscore=problem["action_dist"][np.arange(n), problem["action"], 0],
    )


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (IPS, InverseProbabilityWeighting),
        (SNIPS, SelfNormalizedInverseProbabilityWeighting),
    ],
)
def test_estimates_equal_obp(obp_problem: dict, ours: type, theirs: type) -> None:
    expected = theirs().estimate_policy_value(
        reward=obp_problem["reward"],
        action=obp_problem["action"],
        pscore=obp_problem["pscore"],
        action_dist=obp_problem["action_dist"],
    )
    # obp 0.4.1 treats position=None as position 0 of the (n, n_actions, 1) action_dist.
    explicit = theirs().estimate_policy_value(
        reward=obp_problem["reward"],
        action=obp_problem["action"],
        pscore=obp_problem["pscore"],
        action_dist=obp_problem["action_dist"],
        position=np.zeros(obp_problem["n_rounds"], dtype=int),
    )
    assert explicit == expected
    estimate = ours().estimate(our_batch(obp_problem))
    assert estimate.value == pytest.approx(expected, rel=1e-9)
    # and the interval is consistent with obp's ground truth for this target policy
    se = (estimate.hi - estimate.lo) / (2 * Z95)
    assert abs(estimate.value - obp_problem["truth"]) < 4.5 * se


def test_estimate_all_gives_both_estimators(obp_problem: dict) -> None:
    batch = our_batch(obp_problem)
    estimates = estimate_all(batch)
    assert set(estimates) == {"ipw", "snipw"}
    assert estimates["ipw"].value == IPS().estimate(batch).value
    assert estimates["snipw"].value == SNIPS().estimate(batch).value
    assert estimates["ipw"].n_decisions == obp_problem["n_rounds"]


# ---- unbiasedness and coverage on a problem with a known value ----------------------------------

MEANS = np.array([0.2, 0.5, 0.7])  # Bernoulli reward of each of 3 actions
TARGET_ACTION = 2  # deterministic target: always action 2, true value 0.7


def replicate(rng: np.random.Generator, n: int) -> OpeBatch:
    action = rng.integers(3, size=n)  # uniform logging
    reward = (rng.random(n) < MEANS[action]).astype(np.float64)
    return OpeBatch.from_arrays(
        reward=reward,
        pscore=np.full(n, 1.0 / 3.0),
        target_pscore=(action == TARGET_ACTION).astype(np.float64),
    )


@pytest.mark.parametrize("estimator", [IPS, SNIPS])
def test_estimator_is_unbiased_and_its_interval_covers_the_truth(estimator: type) -> None:
    truth = MEANS[TARGET_ACTION]
    rng = np.random.default_rng(42)
    estimates = [estimator().estimate(replicate(rng, 500)) for _ in range(300)]
    values = np.array([e.value for e in estimates])
    se_of_mean = values.std(ddof=1) / np.sqrt(values.size)
    assert abs(values.mean() - truth) < 4 * se_of_mean, (values.mean(), se_of_mean)
    covered = np.mean([e.lo <= truth <= e.hi for e in estimates])
    # 95% nominal; binomial sd over 300 replications is 0.013. Observed: 0.933 (IPS), 0.940 (SNIPS).
    assert 0.90 <= covered <= 0.99, covered
    # The interval width matches the spread of the estimates across replications.
    mean_half_width = np.mean([(e.hi - e.lo) / 2 for e in estimates])
    assert mean_half_width / Z95 == pytest.approx(values.std(ddof=1), rel=0.15)


# ---- slates: one row per (decision, slot) -------------------------------------------------------


@pytest.fixture(scope="module")
def slate_rows() -> pd.DataFrame:
    """200 decisions × 3 slots, rows shuffled, string decision ids."""
    rng = np.random.default_rng(5)
    n_decisions, k = 200, 3
    frame = pd.DataFrame(
        {
            "decision_id": np.repeat([f"d{j:04d}" for j in range(n_decisions)], k),
            "slot": np.tile(np.arange(k), n_decisions),
            "reward": (rng.random(n_decisions * k) < 0.3).astype(float),
            "pscore": rng.uniform(0.05, 1.0, n_decisions * k),
            "target_pscore": rng.uniform(0.0, 1.0, n_decisions * k),
        }
    )
    return frame.sample(frac=1.0, random_state=1).reset_index(drop=True)


def test_slate_ips_is_the_sum_of_per_slot_ips(slate_rows: pd.DataFrame) -> None:
    batch = OpeBatch.from_frame(slate_rows)
    assert batch.n_decisions == 200 and batch.n_rows == 600
    estimate = IPS().estimate(batch)
    per_slot = [
        IPS().estimate(OpeBatch.from_frame(slate_rows[slate_rows.slot == s].drop(columns="slot")))
        for s in range(3)
    ]
    assert estimate.value == pytest.approx(sum(e.value for e in per_slot), rel=1e-12)
    # The interval is over decisions: the spread of per-decision sums of w·r.
    terms = (slate_rows.target_pscore / slate_rows.pscore * slate_rows.reward).groupby(
        slate_rows.decision_id
    )
    per_decision = terms.sum().to_numpy()
    half = Z95 * per_decision.std(ddof=1) / np.sqrt(per_decision.size)
    assert estimate.value == pytest.approx(per_decision.mean(), rel=1e-12)
    assert estimate.hi - estimate.value == pytest.approx(half, rel=1e-9)
    assert estimate.value - estimate.lo == pytest.approx(half, rel=1e-9)


def test_slate_snips_normalizes_each_slot(slate_rows: pd.DataFrame) -> None:
    batch = OpeBatch.from_frame(slate_rows)
    estimate = SNIPS().estimate(batch)
    w = slate_rows.target_pscore / slate_rows.pscore
    by_slot = (w * slate_rows.reward).groupby(slate_rows.slot).sum() / w.groupby(
        slate_rows.slot
    ).sum()
    assert estimate.value == pytest.approx(by_slot.sum(), rel=1e-12)
    # Not the same as normalizing all rows together.
    pooled = 3 * (w * slate_rows.reward).sum() / w.sum()
    assert abs(estimate.value - pooled) > 1e-6
    # Delta-method interval: influence ψ_i = Σ_k w_ik (r_ik − V_k) / mean_i(w_ik).
    mean_w = w.groupby(slate_rows.slot).sum() / 200
    psi = (
        (w * (slate_rows.reward - slate_rows.slot.map(by_slot)) / slate_rows.slot.map(mean_w))
        .groupby(slate_rows.decision_id)
        .sum()
    )
    half = Z95 * psi.std(ddof=1) / np.sqrt(200)
    assert estimate.hi - estimate.value == pytest.approx(half, rel=1e-9)


def test_target_marginals_of_epsilon_greedy_for_a_logged_slate() -> None:
    scores = np.array([0.2, 0.9, 0.4, 0.7, 0.1, 0.6])  # greedy: 1, 3, 5, 2, 0, 4
    policy = EpsilonGreedySlate(epsilon=0.25, pool=4)  # pool {1, 3, 5, 2}
    # By hand: (1 − ε)[greedy_k = i] + ε [i in pool] / 4.
    cases = {
        (1, 3, 5): [0.75 + 0.0625, 0.75 + 0.0625, 0.75 + 0.0625],
        (3, 1, 2): [0.0625, 0.0625, 0.0625],
        (1, 0, 5): [0.75 + 0.0625, 0.0, 0.75 + 0.0625],
        (4, 2, 3): [0.0, 0.0625, 0.0625],
    }
    for logged, expected in cases.items():
        got = target_marginals(policy, scores, np.array(logged))
        np.testing.assert_allclose(got, expected, rtol=1e-15, atol=0.0)
    # More logged positions than candidates the policy can fill are 0 beyond n.
    tiny = target_marginals(EpsilonGreedySlate(epsilon=0.0), np.array([0.1, 0.5]), [1, 0, 0])
    np.testing.assert_allclose(tiny, [1.0, 1.0, 0.0])


# ---- validation ----------------------------------------------------------------------------------


BAD_INPUTS = [
    pytest.param(with_value("pscore", 3, 0.0), r"pscore must be in \(0, 1\]; got 0\.0 at row 3",
                 id="pscore-zero"),
    pytest.param(with_value("pscore", 7, 1.2), r"pscore must be in \(0, 1\]; got 1\.2 at row 7",
                 id="pscore-above-one"),
    pytest.param(with_value("pscore", 2, np.nan), r"pscore .*nan at row 2", id="pscore-nan"),
    pytest.param(with_value("reward", 5, np.nan), r"reward must be finite; got nan at row 5",
                 id="reward-nan"),
    pytest.param(with_value("reward", 6, np.inf), r"reward .*inf at row 6", id="reward-inf"),
    pytest.param(with_value("target_pscore", 4, -0.1),
                 r"target_pscore must be in \[0, 1\]; got -0\.1 at row 4", id="target-negative"),
    pytest.param(with_value("target_pscore", 1, 1.5), r"target_pscore .*1\.5 at row 1",
                 id="target-above-one"),
    pytest.param(with_value("slot", 8, -1.0),
                 r"slot must be a non-negative integer; got -1\.0 at row 8", id="slot-negative"),
    pytest.param(with_value("slot", 9, 0.5), r"slot .*0\.5 at row 9", id="slot-fraction"),
    pytest.param(drop_last("pscore"), r"pscore must have 10 rows like reward; got 9",
                 id="pscore-short"),
    pytest.param(drop_last("target_pscore"), r"target_pscore must have 10 rows like reward; got 9",
                 id="target-short"),
    pytest.param(drop_last("slot"), r"slot must have 10 rows like reward; got 9", id="slot-short"),
    pytest.param(drop_last("decision_id"), r"decision_id must have 10 rows like reward; got 9",
                 id="decision-short"),
]  # fmt: skip


BAD_MODEL_INPUTS = [
    pytest.param(with_value("q_hat", 4, np.nan), r"q_hat.*row 4", id="q-nan"),
    pytest.param(with_value("q_hat", 4, np.nan), r"q_hat must be finite; got nan at row 4",
                 id="q-nan-message"),
    pytest.param(with_value("q_hat", 2, -np.inf), r"q_hat must be finite; got -inf at row 2",
                 id="q-minus-inf"),
    pytest.param(with_value("v_hat", 7, np.inf), r"v_hat must be finite; got inf at row 7",
                 id="v-inf"),
    pytest.param(with_value("v_hat", 0, np.nan), r"v_hat.*row 0", id="v-nan-first-row"),
    pytest.param(drop_last("q_hat"), r"q_hat must have 10 rows like reward; got 9", id="q-short"),
    pytest.param(drop_last("v_hat"), r"v_hat must have 10 rows like reward; got 9", id="v-short"),
]  # fmt: skip


@pytest.mark.parametrize(("mutate", "match"), BAD_INPUTS + BAD_MODEL_INPUTS)
def test_bad_arrays_raise_naming_column_and_row(mutate, match: str) -> None:
    cols = good_columns()
    OpeBatch.from_arrays(**cols)  # the unmutated input is fine
    mutate(cols)
    with pytest.raises(OpeInputError, match=match):
        OpeBatch.from_arrays(**cols)


@pytest.mark.parametrize(("mutate", "match"), BAD_INPUTS[:9] + BAD_MODEL_INPUTS[:5])
def test_bad_frame_raises_naming_column_and_row(mutate, match: str) -> None:
    cols = good_columns()
    mutate(cols)
    with pytest.raises(OpeInputError, match=match):
        OpeBatch.from_frame(pd.DataFrame(cols))


@pytest.mark.parametrize("missing", ["reward", "pscore", "target_pscore"])
def test_frame_missing_a_required_column_raises_naming_it(missing: str) -> None:
    frame = pd.DataFrame(good_columns()).drop(columns=missing)
    with pytest.raises(OpeInputError, match=rf"missing required column\(s\): {missing}"):
        OpeBatch.from_frame(frame)


@pytest.mark.parametrize(
    ("column", "match"),
    [
        ("reward", r"reward must be numeric; got 'x' at row 4"),
        ("pscore", r"pscore must be numeric; got 'x' at row 4"),
        ("target_pscore", r"target_pscore must be numeric; got 'x' at row 4"),
        ("slot", r"slot must be numeric; got 'x' at row 4"),
        ("q_hat", r"q_hat must be numeric; got 'x' at row 4"),
        ("v_hat", r"v_hat must be numeric; got 'x' at row 4"),
    ],
)
def test_non_numeric_value_raises_naming_column_and_row(column: str, match: str) -> None:
    frame = pd.DataFrame(good_columns()).astype({column: object})
    frame.loc[4, column] = "x"
    with pytest.raises(OpeInputError, match=match):
        OpeBatch.from_frame(frame)


@pytest.mark.parametrize("missing", [np.nan, None])
def test_missing_decision_id_raises_naming_the_row(missing: object) -> None:
    cols = good_columns()
    cols["decision_id"] = np.array([f"d{j // 2}" for j in range(10)], dtype=object)
    cols["decision_id"][6] = missing
    with pytest.raises(OpeInputError, match=r"decision_id must not be missing; got .* at row 6"):
        OpeBatch.from_arrays(**cols)


def test_empty_input_raises() -> None:
    with pytest.raises(OpeInputError, match="reward must have at least one row"):
        OpeBatch.from_arrays(reward=[], pscore=[], target_pscore=[])


def test_opeinputerror_is_a_valueerror() -> None:
    assert issubclass(OpeInputError, ValueError)


@pytest.mark.parametrize("alpha", [0.0, 1.0, -0.5])
def test_bad_alpha_raises(alpha: float) -> None:
    batch = OpeBatch.from_arrays(**good_columns())
    with pytest.raises(ValueError, match="alpha must be in"):
        IPS().estimate(batch, alpha=alpha)


# ---- diagnostics ---------------------------------------------------------------------------------


def test_weights_are_exactly_one_when_target_equals_logging() -> None:
    rng = np.random.default_rng(8)
    pscore = rng.uniform(0.01, 1.0, 1000)
    batch = OpeBatch.from_arrays(reward=rng.random(1000), pscore=pscore, target_pscore=pscore)
    d = IPS().estimate(batch).diagnostics
    assert d["mean_weight"] == 1.0
    assert d["max_weight"] == 1.0
    assert d["ess"] == pytest.approx(1000.0, rel=1e-12)
    assert d["zero_target_share"] == 0.0
    # and then IPS is the plain mean of the rewards
    assert IPS().estimate(batch).value == pytest.approx(batch.reward.mean(), rel=1e-12)


def test_mean_weight_is_near_one_for_any_target_over_logging_support(
    obp_problem: dict,
) -> None:
    # E_logging[π_e(a)/π_0(a)] = Σ_a π_e(a) = 1 when the logging policy covers every action.
    batch = our_batch(obp_problem)
    w = batch.weight
    d = IPS().estimate(batch).diagnostics
    assert abs(d["mean_weight"] - 1.0) < 4.5 * w.std(ddof=1) / np.sqrt(w.size)
    assert d["ess"] < batch.n_rows  # unequal weights lose effective sample size
    assert d["max_weight"] == w.max()


def test_ess_equals_n_when_all_weights_are_equal_and_drops_with_a_zero_target() -> None:
    n = 400
    batch = OpeBatch.from_arrays(
        reward=np.ones(n), pscore=np.full(n, 0.25), target_pscore=np.full(n, 0.5)
    )
    d = SNIPS().estimate(batch).diagnostics
    assert d["ess"] == pytest.approx(n, rel=1e-12)
    assert d["mean_weight"] == 2.0
    half_zero = np.where(np.arange(n) < n // 2, 0.0, 0.5)
    batch = OpeBatch.from_arrays(
        reward=np.ones(n), pscore=np.full(n, 0.25), target_pscore=half_zero
    )
    d = IPS().estimate(batch).diagnostics
    assert d["ess"] == pytest.approx(n / 2, rel=1e-12)
    assert d["zero_target_share"] == 0.5
