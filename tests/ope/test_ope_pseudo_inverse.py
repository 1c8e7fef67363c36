"""The pseudo-inverse slate estimator: its closed form for uniform logging without replacement is
q_πᵀ Γ_μ† 1_s, it is exactly unbiased over every slate for a linear reward (the shortcut
Σ q/p − (K − 1) is not), the general form is unbiased under ε-greedy logging, it covers the
simulated world's truth, streams, and refuses logs it does not fit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cli.main import main
from explore import EpsilonGreedySlate
from loop.coverage_world import CoverageWorld, CoverageWorldConfig
from ope import OpeBatch, OpeInputError, estimate_all, stream_estimates
from ope.pseudo_inverse import (
    PseudoInverse,
    ordered_slates,
    pairwise_marginals,
    position_marginals,
    pseudo_inverse_weights,
    slate_distribution,
    uniform_slate_weights,
)


def uniform_logging(n: int, pool: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Every ordered k-slate of n candidates, and its probability under uniform logging over
    the first ``pool`` candidates."""
    scores = np.linspace(1.0, 0.0, n)  # the pool is the top ``pool`` by score: 0..pool-1
    return slate_distribution(EpsilonGreedySlate(epsilon=1.0, pool=pool), scores, k)


def random_target(slates: np.ndarray, pool: int, seed: int) -> np.ndarray:
    """A random distribution over the slates inside the pool."""
    inside = np.all(slates < pool, axis=1)
    p = np.zeros(len(slates))
    p[inside] = np.random.default_rng(seed).dirichlet(np.full(inside.sum(), 0.3))
    return p


def exhaustive_batch(
    slates: np.ndarray, target: np.ndarray, n: int, reward: np.ndarray, pool: int
) -> OpeBatch:
    """One decision per pool slate with the target's columns; the mean over them is the
    expectation under uniform logging over the pool."""
    k = slates.shape[1]
    inside = np.all(slates < pool, axis=1)
    slates, target_slate = slates[inside], target[inside]
    q = position_marginals(slates, target_slate, n).reshape(k, n)
    q_item = np.minimum(q.sum(axis=0), 1.0)  # a sum of probabilities may round past 1
    rows = slates.shape[0] * k
    slot = np.tile(np.arange(k), slates.shape[0])
    items = slates.ravel()
    logged_slate = 1.0 / np.prod(pool - np.arange(k, dtype=float))
    return OpeBatch.from_arrays(
        reward=reward[slot, items],
        pscore=np.full(rows, 1.0 / pool),
        target_pscore=q[slot, items],
        decision_id=np.repeat(np.arange(slates.shape[0]), k),
        slot=slot,
        slate_pscores={
            "pscore_slate": np.full(rows, logged_slate),
            "target_pscore_slate": np.repeat(target_slate, k),
            "target_pscore_item": q_item[items],
        },
    )


@pytest.mark.parametrize(
    ("n", "pool", "k"), [(5, 5, 2), (6, 4, 3), (5, 3, 3), (4, 4, 1), (7, 5, 2)]
)
def test_closed_form_is_the_pseudo_inverse_of_uniform_logging(n: int, pool: int, k: int) -> None:
    slates, logging_p = uniform_logging(n, pool, k)
    target = random_target(slates, pool, seed=n + pool + k)
    gamma = pairwise_marginals(slates, logging_p, n)
    q = position_marginals(slates, target, n)
    inside = np.all(slates < pool, axis=1)
    expected = pseudo_inverse_weights(gamma, q, slates[inside], n)
    qm = q.reshape(k, n)
    s = slates[inside]
    positions = np.broadcast_to(np.arange(k), s.shape)
    theta = uniform_slate_weights(
        q=qm[positions, s], q_item=qm.sum(axis=0)[s], pool=np.full(s.shape, float(pool)),
        k=np.full(s.shape, float(k)),
    )  # fmt: skip
    np.testing.assert_allclose(theta.sum(axis=1), expected, rtol=0, atol=1e-10)


@pytest.mark.parametrize(("n", "pool", "k"), [(6, 5, 3), (5, 5, 2), (4, 3, 3)])
def test_pi_is_exactly_unbiased_over_every_slate_for_a_linear_reward(
    n: int, pool: int, k: int
) -> None:
    slates, _ = uniform_logging(n, pool, k)
    target = random_target(slates, pool, seed=7)
    phi = np.random.default_rng(8).uniform(0.0, 1.0, size=(k, n))  # E[r at slot j | item a]
    truth = float(target @ phi[np.arange(k), slates].sum(axis=1))
    batch = exhaustive_batch(slates, target, n, phi, pool)
    assert PseudoInverse().estimate(batch).value == pytest.approx(truth, abs=1e-12)
    # The independent-slots shortcut Σ_j q_j/p_j − (K − 1) is biased without replacement.
    weight = (batch.target_pscore / batch.pscore).reshape(-1, k).sum(axis=1) - (k - 1)
    shortcut = float(np.mean(weight * batch.reward.reshape(-1, k).sum(axis=1)))
    if k > 1:
        assert abs(shortcut - truth) > 1e-3


def test_pi_with_one_slot_is_ips() -> None:
    slates, _ = uniform_logging(6, 6, 1)
    target = random_target(slates, 6, seed=3)
    reward = np.random.default_rng(4).uniform(size=(1, 6))
    batch = exhaustive_batch(slates, target, 6, reward, 6)
    pi = PseudoInverse().estimate(batch)
    ips = estimate_all(batch)["ipw"]
    assert pi.value == pytest.approx(ips.value, rel=1e-12)
    assert pi.hi == pytest.approx(ips.hi, rel=1e-9)


def test_general_pi_is_unbiased_under_epsilon_greedy_logging() -> None:
    n, k = 5, 2
    logging_scores = np.array([0.9, 0.1, 0.5, 0.3, 0.7])
    target_scores = np.array([0.2, 0.8, 0.6, 0.1, 0.4])
    slates, mu = slate_distribution(EpsilonGreedySlate(epsilon=0.3), logging_scores, k)
    _, pi = slate_distribution(EpsilonGreedySlate(epsilon=0.2), target_scores, k)
    phi = np.random.default_rng(2).uniform(size=(k, n))
    value = phi[np.arange(k), slates].sum(axis=1)  # (S,) linear slate rewards
    w = pseudo_inverse_weights(
        pairwise_marginals(slates, mu, n), position_marginals(slates, pi, n), slates, n
    )
    assert float(mu @ (w * value)) == pytest.approx(float(pi @ value), abs=1e-10)
    assert float(mu @ w) == pytest.approx(1.0, abs=1e-10)  # a constant reward is linear too


def test_pi_covers_the_simulated_worlds_truth() -> None:
    config = CoverageWorldConfig(seed=3, pool_requests=300, decisions=1500, candidates=6, k=3)
    run = CoverageWorld(config).run(0)
    estimates = estimate_all(run.batch)
    pi = estimates["pi"]
    assert pi.lo <= run.truth <= pi.hi
    assert pi.diagnostics["mean_weight"] == pytest.approx(1.0, abs=0.2)
    # PI's linear weights are far tamer than the whole-slate weights of standard slate IPS.
    assert pi.diagnostics["max_weight"] < estimates["sips"].diagnostics["max_weight"]
    bernstein = PseudoInverse().estimate(run.batch, interval="bernstein")
    assert bernstein.lo < pi.lo and bernstein.hi > pi.hi


def test_pi_streams_like_every_estimator() -> None:
    slates, _ = uniform_logging(6, 5, 3)
    target = random_target(slates, 5, seed=1)
    reward = np.random.default_rng(0).uniform(size=(3, 6))
    batch = exhaustive_batch(slates, target, 6, reward, 5)
    cut = 3 * 25
    frame_rows = {
        name: getattr(batch, name)
        for name in ("reward", "pscore", "target_pscore", "slot", "pscore_slate",
                     "target_pscore_slate", "target_pscore_item")
    }  # fmt: skip

    def chunk(rows: slice, offset: int) -> OpeBatch:
        return OpeBatch.from_arrays(
            reward=frame_rows["reward"][rows],
            pscore=frame_rows["pscore"][rows],
            target_pscore=frame_rows["target_pscore"][rows],
            decision_id=batch.decision[rows] + offset,
            slot=frame_rows["slot"][rows],
            slate_pscores={
                c: frame_rows[c][rows]
                for c in ("pscore_slate", "target_pscore_slate", "target_pscore_item")
            },
        )

    whole = stream_estimates([chunk(slice(None), 0)], [PseudoInverse()])["pi"]
    parts = [chunk(slice(0, cut), 0), chunk(slice(cut, None), 1000)]
    streamed = stream_estimates(parts, [PseudoInverse()])["pi"]
    assert streamed.value == pytest.approx(whole.value, rel=1e-12)
    assert streamed.hi == pytest.approx(whole.hi, rel=1e-10)


def slate_rows(pscore: float, pscore_slate: float, item: float = 0.5) -> dict[str, object]:
    return {
        "reward": np.array([1.0, 0.0]),
        "pscore": np.full(2, pscore),
        "target_pscore": np.array([0.5, 0.25]),
        "decision_id": np.zeros(2, dtype=int),
        "slot": np.array([0, 1]),
        "slate_pscores": {
            "pscore_slate": np.full(2, pscore_slate),
            "target_pscore_slate": np.full(2, 0.1),
            "target_pscore_item": np.full(2, item),
        },
    }


@pytest.mark.parametrize(
    ("pscore", "pscore_slate", "match"),
    [
        (0.3, 0.09, r"pscore 0.3 at row 0 is not 1/M"),
        # ε-greedy (ε = 0.1, pool 5) exploring: marginal ε/5 = 1/50, slate ε/20, not 1/(50·49).
        (0.02, 0.005, r"pscore_slate 0.005 at row 0 is not \(M - K\)!/M! for M = 50, K = 2"),
    ],
)
def test_pi_refuses_logs_that_are_not_uniform(
    pscore: float, pscore_slate: float, match: str
) -> None:
    batch = OpeBatch.from_arrays(**slate_rows(pscore, pscore_slate))  # type: ignore[arg-type]
    assert not PseudoInverse().supports(batch)
    with pytest.raises(OpeInputError, match=match):
        PseudoInverse().estimate(batch)


def test_target_item_probability_below_the_position_one_is_refused() -> None:
    batch = OpeBatch.from_arrays(**slate_rows(0.25, 1 / 12, item=0.3))  # type: ignore[arg-type]
    with pytest.raises(OpeInputError, match=r"target_pscore_item must be at least target_pscore"):
        PseudoInverse().estimate(batch)


def test_enumeration_refuses_large_candidate_sets() -> None:
    with pytest.raises(ValueError, match="n <= 8"):
        ordered_slates(9, 2)


def test_ope_estimate_reads_the_pi_columns_from_parquet(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = CoverageWorldConfig(seed=2, pool_requests=100, decisions=300, candidates=5, k=2)
    b = CoverageWorld(config).run(1).batch
    columns = ("pscore_slate", "target_pscore_slate", "pscore_cascade", "target_pscore_cascade")
    frame = pd.DataFrame(
        {"decision_id": b.decision, "slot": b.slot, "reward": b.reward, "pscore": b.pscore,
         "target_pscore": b.target_pscore, "target_pscore_item": b.target_pscore_item}
        | {c: getattr(b, c) for c in columns}
    )  # fmt: skip
    path = tmp_path / "slates.parquet"
    frame.to_parquet(path)
    assert main(["ope", "estimate", "--input", str(path), "--json"]) == 0
    document = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    expected = PseudoInverse().estimate(b)
    assert document["estimates"]["pi"]["value"] == pytest.approx(expected.value, rel=1e-12)
    assert {"sips", "rips", "iips"} <= set(document["estimates"])
