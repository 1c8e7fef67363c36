"""The cascade doubly robust estimator: unbiased in a cascade world with a wrong reward model
(exactly, over every slate, and over repeated samples), RIPS when the model is 0, lower variance
with a good model, streams, has a Bernstein interval and a paired lift, and bad input is refused
naming the column and the row.

The world: 5 candidates, slates of K = 3, every ordered slate enumerated. The user scans from the
top and plays candidate a with probability α_a when she reaches it, and stops after a play, so
the reward at a slot depends on the items above it (the cascade assumption, and nothing weaker).
Logging is Plackett-Luce (full support); the target is ε-greedy on reversed scores. Every
propensity and ``v_hat_cascade`` comes from the policies through ``ope.replay``.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from explore import EpsilonGreedySlate, PlackettLuceSlate
from ope import Bounds, CascadeDR, OpeBatch, OpeInputError, stream_estimates
from ope.cascade_dr import cascade_model_value
from ope.paired import paired_lift
from ope.pseudo_inverse import ordered_slates
from ope.replay import ReplayPolicy, prefix_conditionals, replay_slate
from ope.slate import SlateIndependentIPS, SlateRewardInteractionIPS

K = 3
ALPHA = np.array([0.2, 0.3, 0.4, 0.6, 0.9])  # P(play | the user reaches the candidate)
SLATES = ordered_slates(ALPHA.size, K)  # (60, 3)
LOGGING_SCORES = np.array([0.5, 0.4, 0.3, 0.2, 0.1])
LOGGING = PlackettLuceSlate(temperature=2.0)
TARGET = EpsilonGreedySlate(epsilon=0.7)
TARGET_SCORES = LOGGING_SCORES[::-1].copy()
OTHER_TARGET = PlackettLuceSlate(temperature=0.3)  # a second target, for the paired lift


def cascade_reward(slates: np.ndarray) -> np.ndarray:
    """(S, K) E[r_k | slate]: α of the item at k times the chance of no play above it."""
    alpha = ALPHA[slates]
    reached = np.cumprod(np.c_[np.ones(len(slates)), 1.0 - alpha[:, :-1]], axis=1)
    return alpha * reached


def columns_of(policy: ReplayPolicy, scores: np.ndarray) -> dict[str, np.ndarray]:
    """Per enumerated slate: the policy's marginal (S, K), prefix (S, K) and slate (S,)
    probabilities of it, from ``ope.replay.replay_slate``."""
    replayed = [replay_slate(policy, scores, slate) for slate in SLATES]
    return {
        "marginal": np.array([r.marginal for r in replayed]),
        "prefix": np.array([r.prefix for r in replayed]),
        "slate": np.array([r.slate for r in replayed]),
    }


LOGGED = columns_of(LOGGING, LOGGING_SCORES)
TARGETED = columns_of(TARGET, TARGET_SCORES)
TRUTH = float(TARGETED["slate"] @ cascade_reward(SLATES).sum(axis=1))
CONDITIONALS = [prefix_conditionals(TARGET, TARGET_SCORES, slate) for slate in SLATES]


def reward_model(kind: str) -> np.ndarray:
    """(K, n) q̂(a, k): zero; wrong (anti-correlated with α); or good (α times the logged chance
    of reaching slot k: a per-position model, not the prefix-exact one)."""
    if kind == "zero":
        return np.zeros((K, ALPHA.size))
    if kind == "wrong":
        return np.tile(0.9 - ALPHA, (K, 1))
    reached = LOGGED["slate"] @ (cascade_reward(SLATES) / ALPHA[SLATES])
    return reached[:, None] * ALPHA[None, :]


def model_columns(kind: str, target: ReplayPolicy = TARGET) -> tuple[np.ndarray, np.ndarray]:
    """(q_hat (S, K), v_hat_cascade (S, K)) per enumerated slate; kind "exact" is the paper's
    prefix-aware Q-function, the true E[r_k | s_1..s_k] given the logged prefix."""
    conditionals = (
        CONDITIONALS
        if target is TARGET
        else [prefix_conditionals(target, TARGET_SCORES, slate) for slate in SLATES]
    )
    if kind == "exact":
        reached = cascade_reward(SLATES) / ALPHA[SLATES]  # (S, K) P(reach k | logged prefix)
        v = np.array(
            [
                cascade_model_value(c, reach[:, None] * ALPHA[None, :])
                for c, reach in zip(conditionals, reached, strict=True)
            ]
        )
        return cascade_reward(SLATES), v
    q = reward_model(kind)
    v = np.array([cascade_model_value(c, q) for c in conditionals])
    return q[np.arange(K), SLATES], v


def batch_of(
    index: np.ndarray,
    reward: np.ndarray,
    kind: str = "wrong",
    targeted: dict[str, np.ndarray] = TARGETED,
    target: ReplayPolicy = TARGET,
) -> OpeBatch:
    """Decisions showing the enumerated slates ``index`` (N,) with rewards (N, K)."""
    n = index.size
    q, v = model_columns(kind, target)
    return OpeBatch.from_arrays(
        reward=reward.ravel(),
        pscore=LOGGED["marginal"][index].ravel(),
        target_pscore=targeted["marginal"][index].ravel(),
        decision_id=np.repeat(np.arange(n), K),
        slot=np.tile(np.arange(K), n),
        q_hat=q[index].ravel(),
        v_hat_cascade=v[index].ravel(),
        slate_pscores={
            "pscore_cascade": LOGGED["prefix"][index].ravel(),
            "target_pscore_cascade": targeted["prefix"][index].ravel(),
            "pscore_slate": np.repeat(LOGGED["slate"][index], K),
            "target_pscore_slate": np.repeat(targeted["slate"][index], K),
        },
    )


def sample(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """n logged decisions: slates from the logging policy, cascade rewards (N, K)."""
    index = rng.choice(len(SLATES), size=n, p=LOGGED["slate"])
    play = rng.random((n, K)) < ALPHA[SLATES[index]]
    first_play = play & (np.cumsum(play, axis=1) == 1)
    return index, first_play.astype(np.float64)


def expectation(estimator: object, kind: str) -> float:
    """E_logging[the estimator's decision term] exactly: one decision per slate, with the
    expected rewards, weighted by the slate's logging probability (the term is linear in r)."""
    batch = batch_of(np.arange(len(SLATES)), cascade_reward(SLATES), kind)
    return float(LOGGED["slate"] @ estimator._moments(batch)[:, 0])  # type: ignore[attr-defined]


def test_the_world_is_what_the_test_needs() -> None:
    assert LOGGED["slate"].sum() == pytest.approx(1.0, abs=1e-12)
    assert TARGETED["slate"].sum() == pytest.approx(1.0, abs=1e-12)
    assert LOGGED["slate"].min() > 0  # full support
    assert 0.5 < TRUTH < 1.0


@pytest.mark.parametrize("kind", ["zero", "wrong", "good", "exact"])
def test_cascade_dr_is_exactly_unbiased_for_any_reward_model(kind: str) -> None:
    assert expectation(CascadeDR(), kind) == pytest.approx(TRUTH, abs=1e-12)


def test_the_cascade_matters_item_position_ips_is_biased_here() -> None:
    assert abs(expectation(SlateIndependentIPS(), "wrong") - TRUTH) > 0.05


@pytest.fixture(scope="module")
def replicates() -> dict[str, np.ndarray]:
    """500 replicates of 300 decisions: each estimator's estimate per replicate."""
    rng = np.random.default_rng(2022)
    out: dict[str, list[float]] = {"wrong": [], "good": [], "exact": [], "rips": [], "iips": []}
    for _ in range(500):
        index, reward = sample(rng, 300)
        for kind in ("wrong", "good", "exact"):
            out[kind].append(CascadeDR().estimate(batch_of(index, reward, kind)).value)
        batch = batch_of(index, reward, "zero")
        out["rips"].append(SlateRewardInteractionIPS().estimate(batch).value)
        out["iips"].append(SlateIndependentIPS().estimate(batch).value)
    return {name: np.array(values) for name, values in out.items()}


def standard_errors_off(values: np.ndarray) -> float:
    return float((values.mean() - TRUTH) / (values.std(ddof=1) / np.sqrt(values.size)))


def test_with_a_wrong_reward_model_the_mean_estimate_is_within_3_se_of_the_truth(
    replicates: dict[str, np.ndarray],
) -> None:
    off = standard_errors_off(replicates["wrong"])
    assert abs(off) < 3.0, (replicates["wrong"].mean(), TRUTH, off)
    # The same replicates detect a biased estimator: the test can fail.
    assert abs(standard_errors_off(replicates["iips"])) > 10.0


def test_a_good_reward_model_lowers_the_variance_below_rips(
    replicates: dict[str, np.ndarray],
) -> None:
    """A per-position model (this project's q̂) lowers the spread; the paper's prefix-aware Q
    lowers it much more. Both stay unbiased."""
    good, exact, rips = (replicates[name].std() for name in ("good", "exact", "rips"))
    assert good < 0.9 * rips, (good, rips)
    assert exact < min(good, 0.7 * rips), (exact, good, rips)
    for name in ("good", "exact"):
        assert abs(standard_errors_off(replicates[name])) < 3.0, name


def test_with_a_zero_reward_model_cascade_dr_is_rips() -> None:
    index, reward = sample(np.random.default_rng(5), 400)
    batch = batch_of(index, reward, "zero")
    assert np.all(batch.v_hat_cascade == 0.0)
    got, rips = CascadeDR().estimate(batch), SlateRewardInteractionIPS().estimate(batch)
    for field in ("value", "lo", "hi"):
        assert getattr(got, field) == pytest.approx(getattr(rips, field), rel=0, abs=1e-12)
    assert got.diagnostics == pytest.approx(rips.diagnostics, rel=1e-12)


def test_cascade_model_value_averages_over_the_conditionals_and_is_zero_where_impossible() -> None:
    q = np.arange(15, dtype=float).reshape(K, 5)
    conditionals = [
        (np.array([0, 3]), np.array([0.25, 0.75])),
        (np.empty(0, dtype=np.int64), np.empty(0)),
        (np.array([4]), np.array([1.0])),
    ]
    np.testing.assert_allclose(
        cascade_model_value(conditionals, q), [0.25 * 0 + 0.75 * 3, 0.0, 14.0]
    )


# ---- streaming, intervals, paired lift --------------------------------------------------


def frame_of(batch: OpeBatch, index: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "decision_id": np.repeat([f"d{j:04d}" for j in range(index.size)], K),
            "slot": batch.slot,
            "reward": batch.reward,
            "pscore": batch.pscore,
            "target_pscore": batch.target_pscore,
            "q_hat": batch.q_hat,
            "v_hat_cascade": batch.v_hat_cascade,
            "pscore_cascade": batch.pscore_cascade,
            "target_pscore_cascade": batch.target_pscore_cascade,
        }
    )


@pytest.mark.parametrize("interval", ["normal", "bootstrap", "bernstein"])
def test_streamed_equals_in_memory(interval: str) -> None:
    index, reward = sample(np.random.default_rng(8), 500)
    frame = frame_of(batch_of(index, reward, "good"), index)
    whole = CascadeDR().estimate(OpeBatch.from_frame(frame), interval=interval, n_bootstrap=50)
    cuts = [0, 3 * 120, 3 * 333, len(frame)]
    parts = [
        OpeBatch.from_frame(frame.iloc[a:b].reset_index(drop=True), row_offset=a)
        for a, b in itertools.pairwise(cuts)
    ]
    streamed = stream_estimates(parts, [CascadeDR()], interval=interval, n_bootstrap=50)
    got = streamed["cascade-dr"]
    for field in ("value", "lo", "hi"):
        assert getattr(got, field) == pytest.approx(getattr(whole, field), rel=1e-10)
    assert got.diagnostics == pytest.approx(whole.diagnostics, rel=1e-10)


def test_the_bernstein_interval_holds_the_normal_one_and_needs_the_largest_weight() -> None:
    index, reward = sample(np.random.default_rng(9), 2000)
    batch = batch_of(index, reward, "wrong")
    estimator = CascadeDR()
    assert estimator.has_bernstein
    normal = estimator.estimate(batch)
    bernstein = estimator.estimate(batch, interval="bernstein")
    assert bernstein.lo < normal.lo < normal.hi < bernstein.hi
    partial = estimator.partial(batch)
    assert partial.min_pscore == pytest.approx(batch.pscore_cascade.min())  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="weight_max"):
        estimator.estimate(
            batch, interval="bernstein", bounds=Bounds(weight_max=0.5 * partial.weights.max_weight)
        )


def test_the_paired_lift_is_the_mean_of_per_decision_differences() -> None:
    index, reward = sample(np.random.default_rng(10), 800)
    other = columns_of(OTHER_TARGET, TARGET_SCORES)
    candidate = batch_of(index, reward, "good", other, OTHER_TARGET)
    baseline = batch_of(index, reward, "good")
    lift = paired_lift(CascadeDR(), candidate, baseline)
    c, b = CascadeDR().estimate(candidate), CascadeDR().estimate(baseline)
    assert lift.value == pytest.approx(c.value - b.value, abs=1e-12)
    diff = CascadeDR()._moments(candidate)[:, 0] - CascadeDR()._moments(baseline)[:, 0]
    se = diff.std(ddof=1) / np.sqrt(diff.size)
    assert (lift.hi - lift.lo) / 2 == pytest.approx(1.959963984540054 * se, rel=1e-9)


# ---- bad input --------------------------------------------------------------------------


def small_frame() -> pd.DataFrame:
    """Two decisions of two slots and one of one slot, all columns cascade-dr reads."""
    return pd.DataFrame(
        {
            "decision_id": ["a", "a", "b", "b", "c"],
            "slot": [0, 1, 0, 1, 0],
            "reward": [1.0, 0.0, 0.0, 1.0, 0.0],
            "pscore": [0.5, 0.4, 0.5, 0.4, 0.5],
            "target_pscore": [0.6, 0.3, 0.2, 0.3, 0.6],
            "q_hat": [0.3, 0.2, 0.3, 0.2, 0.3],
            "v_hat_cascade": [0.3, 0.25, 0.3, 0.2, 0.3],
            "pscore_cascade": [0.5, 0.2, 0.5, 0.1, 0.5],
            "target_pscore_cascade": [0.6, 0.3, 0.2, 0.1, 0.6],
        }
    )


def test_the_small_frame_is_accepted_and_its_terms_are_the_formula() -> None:
    batch = OpeBatch.from_frame(small_frame())
    terms = CascadeDR()._round_terms(batch)
    w = np.array([0.6 / 0.5, 0.3 / 0.2, 0.2 / 0.5, 0.1 / 0.1, 0.6 / 0.5])
    w_above = np.array([1.0, w[0], 1.0, w[2], 1.0])
    expected = w * (batch.reward - batch.q_hat) + w_above * batch.v_hat_cascade  # type: ignore[operator]
    np.testing.assert_allclose(terms, expected, rtol=0, atol=1e-15)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"slot": [0, 2, 0, 1, 0]}, r"slot must run 0, 1, \.\.\., K-1 .* got slots 0, 2 for the "
         r"decision at row 0"),
        ({"slot": [0, 1, 0, 0, 0]}, r"got slots 0, 0 for the decision at row 2"),
        ({"slot": [0, 1, 0, 1, 1]}, r"got slots 1 for the decision at row 4"),
    ],
)  # fmt: skip
def test_gaps_or_repeats_in_a_decisions_slots_name_its_first_row(
    change: dict[str, list[int]], match: str
) -> None:
    frame = small_frame().assign(**change)
    with pytest.raises(OpeInputError, match=match):
        CascadeDR().estimate(OpeBatch.from_frame(frame))


def test_rows_of_a_decision_in_any_order_are_read_by_slot() -> None:
    frame = small_frame()
    shuffled = frame.iloc[[1, 0, 3, 2, 4]].reset_index(drop=True)
    ordered = CascadeDR().estimate(OpeBatch.from_frame(frame))
    assert CascadeDR().estimate(OpeBatch.from_frame(shuffled)).value == pytest.approx(
        ordered.value, abs=1e-15
    )


@pytest.mark.parametrize(
    ("column", "row", "value", "match"),
    [
        ("v_hat_cascade", 3, np.nan, r"v_hat_cascade must be finite; got nan at row 3"),
        ("v_hat_cascade", 1, np.inf, r"v_hat_cascade must be finite; got inf at row 1"),
        ("v_hat_cascade", 2, "x", r"v_hat_cascade must be numeric; got 'x' at row 2"),
    ],
)
def test_a_bad_v_hat_cascade_names_the_row(
    column: str, row: int, value: object, match: str
) -> None:
    frame = small_frame().astype({column: object})
    frame.loc[row, column] = value
    with pytest.raises(OpeInputError, match=match):
        OpeBatch.from_frame(frame)


@pytest.mark.parametrize(
    ("drop", "match"),
    [
        (["v_hat_cascade"], r"cascade-dr needs column\(s\) v_hat_cascade, which the input lacks"),
        (["q_hat", "v_hat_cascade"], r"needs column\(s\) q_hat, v_hat_cascade"),
        (["pscore_cascade", "target_pscore_cascade"], r"needs column\(s\) pscore_cascade"),
    ],
)
def test_missing_columns_are_named(drop: list[str], match: str) -> None:
    batch = OpeBatch.from_frame(small_frame().drop(columns=drop))
    assert not CascadeDR().supports(batch)
    with pytest.raises(OpeInputError, match=match):
        CascadeDR().estimate(batch)
