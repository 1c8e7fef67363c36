"""Adaptive IPS: with the true behaviour given per row it is unbiased under each behaviour and a
mix of them across contexts (exactly over every slate, and over repeated samples), and equals
iips, rips or sips when every row has one behaviour; without it, the data-driven choice takes the
item-position weights in the simulated (position-based) world and rejects them in a cascade world
where their bias is large against the noise; it streams, and bad input is named.

The worlds enumerate every ordered slate of K = 3 out of 5 candidates in each context. Logging is
Plackett-Luce (full support), the target ε-greedy on reversed scores; propensities come from the
policies through ``ope.replay``. Rewards at slot k, with α the candidates' appeal:

- independent (position-based): θ_k α_{s_k}, θ_k = 1 / log2(k + 2);
- cascade: the user plays s_k with probability α_{s_k} when she reaches it and stops after a play;
- standard: α_{s_k} (1 − mean of α over the other items of the slate, halved): a strong slate
  anywhere, below as well as above, takes plays from every slot.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import pytest

from explore import EpsilonGreedySlate, PlackettLuceSlate
from ope import (
    AdaptiveIPS,
    OpeBatch,
    OpeInputError,
    SlateIndependentIPS,
    SlateRewardInteractionIPS,
    SlateStandardIPS,
    stream_estimates,
)
from ope.adaptive_ips import CASCADE, INDEPENDENT, STANDARD, choose_behavior
from ope.moments import Moments
from ope.paired import paired_lift
from ope.pseudo_inverse import ordered_slates
from ope.replay import ReplayPolicy, replay_slate
from sim import World as SimWorld
from sim import WorldConfig

K = 3
N_CANDIDATES = 5
SLATES = ordered_slates(N_CANDIDATES, K)  # (60, 3)
THETA = 1.0 / np.log2(np.arange(K) + 2.0)
ALPHA = np.array([0.2, 0.3, 0.4, 0.6, 0.9])
LOGGING_SCORES = np.array([0.5, 0.4, 0.3, 0.2, 0.1])
LOGGING = PlackettLuceSlate(temperature=2.0)
TARGET = EpsilonGreedySlate(epsilon=0.7)
CODES = {"independent": INDEPENDENT, "cascade": CASCADE, "standard": STANDARD}


def replayed(policy: ReplayPolicy, scores: np.ndarray) -> dict[str, np.ndarray]:
    """Per enumerated slate: marginal (S, K), prefix (S, K) and slate (S,) probabilities."""
    rows = [replay_slate(policy, scores, slate) for slate in SLATES]
    return {
        "marginal": np.array([r.marginal for r in rows]),
        "prefix": np.array([r.prefix for r in rows]),
        "slate": np.array([r.slate for r in rows]),
    }


def expected_reward(kind: str, alpha: np.ndarray) -> np.ndarray:
    """(S, K) E[r_k | slate] under one behaviour."""
    a = alpha[SLATES]
    if kind == "independent":
        return THETA * a
    if kind == "cascade":
        return a * np.cumprod(np.c_[np.ones(len(SLATES)), 1.0 - a[:, :-1]], axis=1)
    others = (a.sum(axis=1, keepdims=True) - a) / (K - 1)
    return a * (1.0 - 0.5 * others)


@dataclass(frozen=True)
class World:
    """Contexts, each with its true behaviour; arrays are (C, S, K) or (C, S)."""

    behavior: np.ndarray  # (C,) true behaviour codes
    appeal: np.ndarray  # (C, S, K): P(play) of a reached slot (cascade) or E[r_k] (the others)
    mean: np.ndarray  # (C, S, K) E[r_k | context, slate]
    logged: dict[str, np.ndarray]
    targeted: dict[str, np.ndarray]

    @property
    def truth(self) -> float:
        return float(np.mean(np.sum(self.targeted["slate"] * self.mean.sum(axis=2), axis=1)))


def stacked(per_context: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {key: np.stack([c[key] for c in per_context]) for key in per_context[0]}


def enumerated_world(kinds: list[str]) -> World:
    """One context per kind, the candidates' appeal 10% lower in each next context."""
    alphas = [ALPHA * (1.0 - 0.1 * c) for c in range(len(kinds))]
    appeal = [
        a[SLATES] if kind == "cascade" else expected_reward(kind, a)
        for kind, a in zip(kinds, alphas, strict=True)
    ]
    logged = replayed(LOGGING, LOGGING_SCORES)
    targeted = replayed(TARGET, LOGGING_SCORES[::-1].copy())
    return World(
        behavior=np.array([CODES[kind] for kind in kinds]),
        appeal=np.stack(appeal),
        mean=np.stack([expected_reward(k, a) for k, a in zip(kinds, alphas, strict=True)]),
        logged=stacked([logged] * len(kinds)),
        targeted=stacked([targeted] * len(kinds)),
    )


def sample(world: World, rng: np.random.Generator, n: int) -> tuple[np.ndarray, ...]:
    """n decisions: (context (N,), slate index (N,), rewards (N, K))."""
    context = rng.integers(world.behavior.size, size=n)
    cdf = np.cumsum(world.logged["slate"], axis=1)[context]  # (N, S)
    index = np.minimum((cdf < rng.random(n)[:, None]).sum(axis=1), cdf.shape[1] - 1)
    play = rng.random((n, K)) < world.appeal[context, index]
    stops = (world.behavior[context] == CASCADE)[:, None]
    first_play = play & (np.cumsum(play, axis=1) == 1)
    return context, index, np.where(stops, first_play, play).astype(np.float64)


def batch_of(
    world: World,
    context: np.ndarray,
    index: np.ndarray,
    reward: np.ndarray,
    behavior: np.ndarray | None = None,
) -> OpeBatch:
    """The OPE rows of decisions; ``behavior`` (C,) gives each context's code to every row."""
    n = index.size
    lg, tg = world.logged, world.targeted
    return OpeBatch.from_arrays(
        reward=reward.ravel(),
        pscore=lg["marginal"][context, index].ravel(),
        target_pscore=tg["marginal"][context, index].ravel(),
        decision_id=np.repeat(np.arange(n), K),
        slot=np.tile(np.arange(K), n),
        slate_pscores={
            "pscore_cascade": lg["prefix"][context, index].ravel(),
            "target_pscore_cascade": tg["prefix"][context, index].ravel(),
            "pscore_slate": np.repeat(lg["slate"][context, index], K),
            "target_pscore_slate": np.repeat(tg["slate"][context, index], K),
        },
        behavior=None if behavior is None else np.repeat(behavior[context], K),
    )


def expectation(world: World, estimator: object, behavior: np.ndarray | None) -> float:
    """E[the decision term] exactly: one decision per (context, slate) with the expected
    rewards, weighted by P(context) P_logging(slate | context); the terms are linear in r."""
    c, s = world.mean.shape[:2]
    context, index = np.repeat(np.arange(c), s), np.tile(np.arange(s), c)
    batch = batch_of(world, context, index, world.mean[context, index], behavior)
    terms = estimator._moments(batch)  # type: ignore[attr-defined]
    return float(world.logged["slate"][context, index] @ terms[:, 0]) / c


WORLDS = {
    "independent": ["independent"],
    "cascade": ["cascade"],
    "standard": ["standard"],
    "mix": ["independent", "cascade", "standard"],
}


@pytest.mark.parametrize("name", list(WORLDS))
def test_with_the_true_behaviour_aips_is_exactly_unbiased(name: str) -> None:
    world = enumerated_world(WORLDS[name])
    expected = expectation(world, AdaptiveIPS(), world.behavior)
    assert expected == pytest.approx(world.truth, abs=1e-12)


@pytest.mark.parametrize(
    ("name", "label", "unbiased"),
    [
        ("independent", "cascade", True),  # a coarser behaviour stays unbiased
        ("cascade", "standard", True),
        ("mix", "standard", True),
        ("cascade", "independent", False),  # a finer one is biased
        ("standard", "cascade", False),
        ("mix", "independent", False),
    ],
)
def test_a_coarser_behaviour_stays_unbiased_and_a_finer_one_does_not(
    name: str, label: str, unbiased: bool
) -> None:
    world = enumerated_world(WORLDS[name])
    labels = np.full(world.behavior.size, CODES[label])
    gap = abs(expectation(world, AdaptiveIPS(), labels) - world.truth)
    assert (gap < 1e-12) if unbiased else (gap > 0.02), gap


def replicate_estimates(
    world: World, behavior: np.ndarray | None, *, reps: int, n: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(estimates (R,), chosen behaviour codes (R,), −1 when given)."""
    rng = np.random.default_rng(seed)
    values, chosen = np.empty(reps), np.full(reps, -1)
    for r in range(reps):
        estimate = AdaptiveIPS().estimate(batch_of(world, *sample(world, rng, n), behavior))
        values[r] = estimate.value
        if behavior is None:
            chosen[r] = int(estimate.diagnostics["behavior"])
    return values, chosen


def standard_errors_off(values: np.ndarray, truth: float) -> float:
    return float((values.mean() - truth) / (values.std(ddof=1) / np.sqrt(values.size)))


@pytest.mark.parametrize("name", list(WORLDS))
def test_with_the_true_behaviour_the_mean_estimate_is_within_3_se_of_the_truth(name: str) -> None:
    world = enumerated_world(WORLDS[name])
    values, _ = replicate_estimates(world, world.behavior, reps=400, n=300, seed=7)
    off = standard_errors_off(values, world.truth)
    assert abs(off) < 3.0, (values.mean(), world.truth, off)
    if name != "independent":  # the same replicates see the bias of a wrong behaviour
        wrong = np.full(world.behavior.size, INDEPENDENT)
        biased, _ = replicate_estimates(world, wrong, reps=400, n=300, seed=7)
        assert abs(standard_errors_off(biased, world.truth)) > 5.0


@pytest.mark.parametrize(
    ("code", "estimator"),
    [
        (INDEPENDENT, SlateIndependentIPS()),
        (CASCADE, SlateRewardInteractionIPS()),
        (STANDARD, SlateStandardIPS()),
    ],
)
def test_one_behaviour_for_every_row_is_the_matching_slate_estimator(
    code: int, estimator: object
) -> None:
    world = enumerated_world(["cascade"])
    batch = batch_of(world, *sample(world, np.random.default_rng(3), 500), np.array([code]))
    got, want = AdaptiveIPS().estimate(batch), estimator.estimate(batch)  # type: ignore[attr-defined]
    for field in ("value", "lo", "hi"):
        assert getattr(got, field) == pytest.approx(getattr(want, field), rel=0, abs=1e-12)
    for key in ("ess", "max_weight", "mean_weight"):
        assert got.diagnostics[key] == pytest.approx(want.diagnostics[key], rel=1e-12)
    name = ("independent", "cascade", "standard")[code]
    assert got.diagnostics[f"{name}_share"] == 1.0


# ---- the data-driven choice ---------------------------------------------------------------


def sim_world(n_contexts: int = 3) -> World:
    """Requests of the project's simulated world, each with its five best candidates: rewards
    θ_k r(x, s_k), position-based (the world's examination model); logging Plackett-Luce on the
    world's play logits, the target ε-greedy on their reverse. Truth from the world itself."""
    world = SimWorld(WorldConfig(seed=11, n_items=80, n_users=40))
    requests = world.sample_requests(n_contexts, start=0.0, end=5.0, rng=np.random.default_rng(1))
    appeal, logged, targeted, truths = [], [], [], []
    theta = world.examination(K)
    for request in requests:
        items = world.oracle_slate(request, N_CANDIDATES)
        logit = world.affinity(request, items)
        appeal.append(theta * world.item_rewards(request, items)[SLATES])
        logged.append(replayed(LOGGING, logit))
        targeted.append(replayed(TARGET, -logit))
        truths.append(world.policy_value(request, items, TARGET.marginals(-logit, K)))
    out = World(
        behavior=np.full(n_contexts, INDEPENDENT),
        appeal=np.stack(appeal),
        mean=np.stack(appeal),
        logged=stacked(logged),
        targeted=stacked(targeted),
    )
    assert out.truth == pytest.approx(float(np.mean(truths)), rel=1e-12)  # enumeration agrees
    return out


@pytest.fixture(scope="module")
def position_based() -> dict[str, np.ndarray]:
    """300 replicates of 500 decisions in the simulated world: the data-driven estimate, the
    chosen behaviour, and the three fixed estimators."""
    world = sim_world()
    rng = np.random.default_rng(12)
    out: dict[str, list[float]] = {"aips": [], "chosen": [], "iips": [], "rips": [], "sips": []}
    for _ in range(300):
        batch = batch_of(world, *sample(world, rng, 500))
        estimate = AdaptiveIPS().estimate(batch)
        out["aips"].append(estimate.value)
        out["chosen"].append(estimate.diagnostics["behavior"])
        for fixed in (SlateIndependentIPS(), SlateRewardInteractionIPS(), SlateStandardIPS()):
            out[fixed.name].append(fixed.estimate(batch).value)
    return {"truth": np.array(world.truth), **{k: np.array(v) for k, v in out.items()}}


def test_in_the_position_based_world_the_choice_is_mostly_independent(
    position_based: dict[str, np.ndarray],
) -> None:
    """All three are unbiased here and item-position IPS has a third of standard IPS's spread,
    so it is chosen most of the time. The choice is noisy (with no bias, the squared gap exceeds
    its variance about a third of the time), and when it falls on standard IPS that is because
    its estimate and its variance came out low, so the data-driven estimate is lower than the
    truth on average (about 0.02 here, 5 standard errors of the mean over the replicates)."""
    r = position_based
    truth = float(r["truth"])
    share = np.bincount(r["chosen"].astype(int), minlength=3) / r["chosen"].size
    assert r["iips"].std() < 0.5 * r["sips"].std()  # independence has the lower variance
    assert share[INDEPENDENT] >= 0.6, share
    assert share[INDEPENDENT] > share[CASCADE] + share[STANDARD], share
    rmse = {k: float(np.sqrt(np.mean((r[k] - truth) ** 2))) for k in ("aips", "sips")}
    assert rmse["aips"] < 0.7 * rmse["sips"], rmse
    assert abs(standard_errors_off(r["iips"], truth)) < 3.0  # the world is position-based


def test_in_a_cascade_world_the_biased_low_variance_choice_is_rejected() -> None:
    """Item-position IPS is biased by 0.12 here with a third of standard IPS's spread; with 8000
    decisions that bias is about four of standard IPS's standard errors, and it is rejected."""
    world = enumerated_world(["cascade"])
    rng = np.random.default_rng(21)
    values, chosen, independent = np.empty(100), np.empty(100, dtype=int), np.empty(100)
    for r in range(100):
        batch = batch_of(world, *sample(world, rng, 8000))
        estimate = AdaptiveIPS().estimate(batch)
        values[r], chosen[r] = estimate.value, int(estimate.diagnostics["behavior"])
        independent[r] = SlateIndependentIPS().estimate(batch).value
    assert np.mean(chosen == INDEPENDENT) <= 0.05, np.bincount(chosen, minlength=3)
    assert abs(standard_errors_off(independent, world.truth)) > 20.0
    assert abs(standard_errors_off(values, world.truth)) < 3.0
    rmse = np.sqrt(np.mean((values - world.truth) ** 2))
    assert rmse < 0.5 * np.sqrt(np.mean((independent - world.truth) ** 2))


@pytest.mark.parametrize("interval", ["normal", "bernstein", "bootstrap"])
def test_the_chosen_behaviour_is_reported_with_its_own_estimate_and_weights(
    interval: str,
) -> None:
    world = enumerated_world(["cascade"])
    batch = batch_of(world, *sample(world, np.random.default_rng(4), 8000))
    estimate = AdaptiveIPS().estimate(batch, interval=interval, n_bootstrap=50)
    code = int(estimate.diagnostics["behavior"])
    fixed = (SlateIndependentIPS(), SlateRewardInteractionIPS(), SlateStandardIPS())[code]
    want = fixed.estimate(batch, interval=interval, n_bootstrap=50)
    for field in ("value", "lo", "hi"):
        assert getattr(estimate, field) == pytest.approx(getattr(want, field), rel=1e-12)
    for key in ("ess", "max_weight", "mean_weight", "zero_target_share"):
        assert estimate.diagnostics[key] == pytest.approx(want.diagnostics[key], rel=1e-12)
    mse = [estimate.diagnostics[f"mse_{name}"] for name in ("independent", "cascade", "standard")]
    assert int(np.argmin(mse)) == code
    assert estimate.diagnostics["reference"] == STANDARD
    shares = [estimate.diagnostics[f"{n}_share"] for n in ("independent", "cascade", "standard")]
    assert shares == [float(i == code) for i in range(3)]


def data_driven_z(values: np.ndarray, weights: np.ndarray, rows: int = 3) -> np.ndarray:
    """The data-driven AIPS's z (N, 7): per behaviour Σ w r and Σ w, then the row count."""
    n = values.shape[0]
    return np.asfortranarray(np.c_[values, weights, np.full(n, float(rows))])


def test_the_criterion_is_bias_squared_beyond_noise_plus_variance() -> None:
    """By hand on z with known moments: the reference's MSE is its variance; a behaviour whose
    gap to it is within noise has no bias term; ties go to the more general behaviour."""
    rng = np.random.default_rng(0)
    values = rng.normal(size=(400, 3)) * [0.1, 0.2, 1.0] + [1.5, 1.0, 1.0]
    weights = 3.0 + rng.normal(size=(400, 3)) * [0.2, 0.5, 1.0]  # mean row weight 1
    choice = choose_behavior(Moments.of(data_driven_z(values, weights)))
    cov = np.cov(values.T) / 400
    gap = values.mean(axis=0) - values.mean(axis=0)[STANDARD]
    gap_var = np.diag(cov) + cov[STANDARD, STANDARD] - 2 * cov[:, STANDARD]
    expected = np.maximum(gap**2 - gap_var, 0) + np.diag(cov)
    np.testing.assert_allclose(choice.mse, expected, rtol=1e-10)
    assert choice.reference == STANDARD
    assert choice.behavior == CASCADE  # independent is 0.5 off: its bias term dominates
    np.testing.assert_allclose(choice.mean_weight, weights.mean(axis=0) / 3.0, rtol=1e-12)
    tied = choose_behavior(Moments.of(data_driven_z(np.ones((50, 3)), np.full((50, 3), 3.0))))
    assert tied.behavior == STANDARD
    alone = choose_behavior(Moments.of(data_driven_z(np.ones((1, 3)), np.full((1, 3), 3.0))))
    assert alone.behavior == STANDARD  # one decision: nothing is estimable


@pytest.mark.parametrize("degenerate", ["missed the tail", "a handful of large weights"])
def test_a_standard_sample_that_cannot_carry_a_variance_is_not_the_reference(
    degenerate: str,
) -> None:
    """Standard IPS low by luck with a small variance estimate would win the criterion; when its
    mean weight is far from 1 beyond noise, or its weights' ESS is below 30, it takes no part
    and cascade becomes the reference."""
    rng = np.random.default_rng(1)
    n = 400
    values = np.c_[rng.normal(1.0, 0.1, n), rng.normal(1.0, 0.2, n), rng.normal(0.2, 0.01, n)]
    weights = 3.0 + rng.normal(size=(n, 3)) * 0.3
    if degenerate == "missed the tail":
        weights[:, STANDARD] = 0.9  # every decision at 0.3 per row: the target's slates unseen
    else:
        weights[:, STANDARD] = 0.9
        weights[:8, STANDARD] = 120.0  # mean weight about 1, ESS about 10
    choice = choose_behavior(Moments.of(data_driven_z(values, weights)))
    assert choice.reference == CASCADE
    assert choice.mse[STANDARD] == np.inf
    assert choice.behavior in (INDEPENDENT, CASCADE)
    weights[:, STANDARD] = 3.0 + rng.normal(size=n) * 0.3  # a sound sample: standard is back
    assert choose_behavior(Moments.of(data_driven_z(values, weights))).reference == STANDARD


def test_with_uniform_logging_and_few_decisions_the_choice_avoids_a_degenerate_standard() -> None:
    """Uniform logging over the 60 slates and a target that shows one slate 70% of the time:
    with 200 decisions standard IPS sees that slate about three times, so its estimate and its
    variance are often both small by luck. The data-driven choice must not take it then."""
    base = enumerated_world(["independent"])
    world = replace(
        base,
        logged=stacked([replayed(EpsilonGreedySlate(epsilon=1.0), LOGGING_SCORES)]),
        targeted=stacked([replayed(EpsilonGreedySlate(epsilon=0.3), LOGGING_SCORES[::-1].copy())]),
    )
    rng = np.random.default_rng(0)
    values, chosen, covered, sips = np.empty(300), np.empty(300, dtype=int), 0, np.empty(300)
    for r in range(300):
        batch = batch_of(world, *sample(world, rng, 200))
        estimate = AdaptiveIPS().estimate(batch)
        values[r], chosen[r] = estimate.value, int(estimate.diagnostics["behavior"])
        covered += estimate.lo <= world.truth <= estimate.hi
        sips[r] = SlateStandardIPS().estimate(batch).value
    assert np.mean(chosen == STANDARD) <= 0.02, np.bincount(chosen, minlength=3)
    assert covered / 300 >= 0.85
    rmse = np.sqrt(np.mean((values - world.truth) ** 2))
    assert rmse < 0.3 * np.sqrt(np.mean((sips - world.truth) ** 2))


# ---- streaming, paired lift ----------------------------------------------------------------


def frame_of(batch: OpeBatch, behavior: bool) -> pd.DataFrame:
    columns = [
        "reward", "pscore", "target_pscore", "pscore_cascade", "target_pscore_cascade",
        "pscore_slate", "target_pscore_slate",
    ]  # fmt: skip
    frame = pd.DataFrame({c: getattr(batch, c) for c in columns})
    frame["decision_id"] = [f"d{d:05d}" for d in batch.decision]
    frame["slot"] = batch.slot
    if behavior:
        frame["behavior"] = np.array(["independent", "cascade", "standard"])[batch.behavior]
    return frame


@pytest.mark.parametrize("given", [False, True])
@pytest.mark.parametrize("interval", ["normal", "t", "bootstrap", "bernstein"])
def test_streamed_equals_in_memory(interval: str, given: bool) -> None:
    world = enumerated_world(WORLDS["mix"])
    batch = batch_of(
        world, *sample(world, np.random.default_rng(6), 600), world.behavior if given else None
    )
    frame = frame_of(batch, given)
    whole = AdaptiveIPS().estimate(OpeBatch.from_frame(frame), interval=interval, n_bootstrap=60)
    cuts = [0, 3 * 100, 3 * 350, len(frame)]
    parts = [
        OpeBatch.from_frame(frame.iloc[a:b].reset_index(drop=True), row_offset=a)
        for a, b in itertools.pairwise(cuts)
    ]
    got = stream_estimates(parts, [AdaptiveIPS()], interval=interval, n_bootstrap=60)["aips"]
    assert got.interval == whole.interval == interval
    for field in ("value", "lo", "hi"):
        assert getattr(got, field) == pytest.approx(getattr(whole, field), rel=1e-10)
    assert got.diagnostics == pytest.approx(whole.diagnostics, rel=1e-10)
    assert ("behavior" in got.diagnostics) is not given


def test_partials_with_and_without_the_behaviour_column_do_not_merge() -> None:
    world = enumerated_world(WORLDS["mix"])
    drawn = sample(world, np.random.default_rng(2), 100)
    chosen = AdaptiveIPS().partial(batch_of(world, *drawn))
    given = AdaptiveIPS().partial(batch_of(world, *drawn, world.behavior))
    with pytest.raises(ValueError, match="with the behavior column and one without"):
        chosen.merge(given)
    with pytest.raises(ValueError, match="needs the partial its own partial"):
        AdaptiveIPS().finish(replace(given, moments=chosen.moments))


def test_the_paired_lift_is_exact_with_the_behaviour_and_standard_ips_without() -> None:
    world = enumerated_world(WORLDS["mix"])
    drawn = sample(world, np.random.default_rng(5), 800)
    other = replace(world, targeted=stacked([replayed(LOGGING, LOGGING_SCORES[::-1].copy())] * 3))
    given = [batch_of(w, *drawn, world.behavior) for w in (other, world)]
    lift = paired_lift(AdaptiveIPS(), *given)
    values = [AdaptiveIPS().estimate(b).value for b in given]
    assert lift.value == pytest.approx(values[0] - values[1], abs=1e-12)
    diff = AdaptiveIPS()._moments(given[0])[:, 0] - AdaptiveIPS()._moments(given[1])[:, 0]
    se = diff.std(ddof=1) / np.sqrt(diff.size)
    assert (lift.hi - lift.lo) / 2 == pytest.approx(1.959963984540054 * se, rel=1e-9)
    # Without the column the lift cannot make the choice and is standard IPS's.
    chosen = [batch_of(w, *drawn) for w in (other, world)]
    fallback = paired_lift(AdaptiveIPS(), *chosen)
    sips = paired_lift(SlateStandardIPS(), *chosen)
    assert (fallback.value, fallback.lo, fallback.hi) == pytest.approx(
        (sips.value, sips.lo, sips.hi), abs=1e-12
    )


# ---- bad input ---------------------------------------------------------------------------


def small_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "decision_id": ["a", "a", "b", "b"],
            "slot": [0, 1, 0, 1],
            "reward": [1.0, 0.0, 0.0, 1.0],
            "pscore": [0.5, 0.4, 0.5, 0.4],
            "target_pscore": [0.6, 0.3, 0.2, 0.3],
            "pscore_cascade": [0.5, 0.2, 0.5, 0.1],
            "target_pscore_cascade": [0.6, 0.3, 0.2, 0.1],
            "pscore_slate": [0.2, 0.2, 0.1, 0.1],
            "target_pscore_slate": [0.3, 0.3, 0.1, 0.1],
            "behavior": [0, 1, 2, 0],
        }
    )


@pytest.mark.parametrize(
    ("row", "value", "match"),
    [
        (2, 3, r"behavior must be 0 \(independent\), 1 \(cascade\) or 2 \(standard\); got 3\.0 "
         r"at row 2$"),
        (0, -1, r"got -1\.0 at row 0$"),
        (3, 0.5, r"got 0\.5 at row 3$"),
        (1, np.nan, r"got nan at row 1$"),
        (1, "cascading", r"behavior must be numeric; got 'cascading' at row 1"),
    ],
)  # fmt: skip
def test_a_bad_behaviour_names_the_row(row: int, value: object, match: str) -> None:
    frame = small_frame().astype({"behavior": object})
    frame.loc[row, "behavior"] = value
    with pytest.raises(OpeInputError, match=match):
        OpeBatch.from_frame(frame)


def test_a_bad_behaviour_in_a_later_chunk_names_its_row_in_the_whole_input() -> None:
    frame = small_frame().assign(behavior=[0, 1, 2, 7])
    with pytest.raises(OpeInputError, match=r"got 7\.0 at row 1003$"):
        OpeBatch.from_frame(frame, row_offset=1000)


def test_behaviour_names_read_as_their_codes() -> None:
    named = small_frame().assign(behavior=["independent", "cascade", "standard", "independent"])
    assert np.array_equal(OpeBatch.from_frame(named).behavior, [0, 1, 2, 0])  # type: ignore[arg-type]
    got = AdaptiveIPS().estimate(OpeBatch.from_frame(named)).value
    assert got == AdaptiveIPS().estimate(OpeBatch.from_frame(small_frame())).value


@pytest.mark.parametrize(
    ("behavior", "drop", "match"),
    [
        ([0, 1, 0, 1], ["pscore_cascade", "target_pscore_cascade"],
         r"aips needs column\(s\) pscore_cascade, target_pscore_cascade for the behaviours in its "
         r"behavior column"),
        ([0, 2, 0, 0], ["pscore_slate", "target_pscore_slate"], r"needs column\(s\) pscore_slate"),
        (None, ["pscore_slate", "target_pscore_slate"],
         r"aips needs column\(s\) pscore_slate, target_pscore_slate, which the input lacks"),
    ],
)  # fmt: skip
def test_missing_propensity_columns_are_named(
    behavior: list[int] | None, drop: list[str], match: str
) -> None:
    frame = small_frame().drop(columns=drop)
    frame = frame.drop(columns="behavior") if behavior is None else frame.assign(behavior=behavior)
    batch = OpeBatch.from_frame(frame)
    assert not AdaptiveIPS().supports(batch)
    with pytest.raises(OpeInputError, match=match):
        AdaptiveIPS().estimate(batch)


def test_rows_that_only_use_the_marginals_need_no_slate_columns() -> None:
    frame = (
        small_frame()
        .assign(behavior=0)
        .drop(
            columns=[
                "pscore_cascade",
                "target_pscore_cascade",
                "pscore_slate",
                "target_pscore_slate",
            ]
        )
    )
    batch = OpeBatch.from_frame(frame)
    assert AdaptiveIPS().supports(batch)
    assert AdaptiveIPS().estimate(batch).value == SlateIndependentIPS().estimate(batch).value


def test_one_slot_is_left_to_ipw() -> None:
    frame = small_frame().iloc[[0, 2]].reset_index(drop=True)
    assert not AdaptiveIPS().supports(OpeBatch.from_frame(frame))
