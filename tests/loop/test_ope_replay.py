"""Policy replay and the support diagnostic: replayed slate, prefix and item probabilities equal
the target's by enumeration; replaying the logging policy on its own logs gives back the logged
propensities; every slate estimator runs on replayed logs; a target outside the logging pool is
flagged by its unsupported mass."""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from explore import EpsilonGreedySlate
from fm_core import PopularityAffinityScorer
from loop.replay import replay_batch, replay_window
from loop.service import DecisionService
from loop.sim_bridge import catalog_from_world, decision_input, events_from_outcome
from loop.windows import LoggedWindow, read_window
from ope import estimate_all
from ope.pseudo_inverse import slate_distribution
from ope.replay import PrefixError, replay_slate
from ope.support import support_diagnostics, unsupported_mass
from proplog.engine import init_db, make_engine
from proplog.store import record_events
from sim import World, WorldConfig
from sim.clock import to_datetime

K = 3
LOGGING = EpsilonGreedySlate(epsilon=1.0, pool=8)  # uniform over the top 8


@pytest.mark.parametrize(
    "policy",
    [EpsilonGreedySlate(epsilon=0.3), EpsilonGreedySlate(epsilon=0.5, pool=4)],
    ids=["eps-greedy", "eps-greedy-pool"],
)
def test_replayed_probabilities_equal_the_policys_by_enumeration(
    policy: EpsilonGreedySlate,
) -> None:
    scores = np.array([0.3, 0.9, 0.1, 0.6, 0.5, 0.8])
    slates, probability = slate_distribution(policy, scores, K)
    for logged in ([1, 5, 3], [0, 2, 4], [5, 1, 3]):
        replayed = replay_slate(policy, scores, logged)
        for j in range(K):
            at_j = slates[:, j] == logged[j]
            assert replayed.marginal[j] == pytest.approx(probability[at_j].sum(), abs=1e-12)
            anywhere = np.any(slates == logged[j], axis=1)
            assert replayed.item[j] == pytest.approx(probability[anywhere].sum(), abs=1e-12)
            prefix = np.all(slates[:, : j + 1] == logged[: j + 1], axis=1)
            assert replayed.prefix[j] == pytest.approx(probability[prefix].sum(), abs=1e-12)
        assert replayed.slate == pytest.approx(replayed.prefix[-1])


def test_replay_refuses_a_policy_whose_prefix_probabilities_depend_on_the_slate_length() -> None:
    # A pool smaller than K grows to K for a K-slate but not for its one-item prefix.
    policy = EpsilonGreedySlate(epsilon=0.5, pool=2)
    scores = np.array([0.3, 0.9, 0.1, 0.6])
    with pytest.raises(PrefixError, match="depend on the slate length"):
        replay_slate(policy, scores, [0, 2, 3])
    # without prefixes, the marginals and the whole slate's probability are still exact
    loose = replay_slate(policy, scores, [0, 2, 3], require_prefix=False)
    assert loose.prefix is None
    assert loose.slate == pytest.approx(policy.slate_probability(scores, np.array([0, 2, 3])))
    marginals = policy.marginals(scores, 3)
    assert loose.marginal == pytest.approx(marginals[[0, 1, 2], [0, 2, 3]])


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> tuple[Engine, PopularityAffinityScorer]:
    """40 decisions of uniform logging over the scorer's top 8, with the world's plays."""
    world = World(WorldConfig(seed=5, n_items=60, n_users=20))
    scorer = PopularityAffinityScorer(catalog_from_world(world), model_version="untrained")
    path = Path(tmp_path_factory.mktemp("replay")) / "log.db"
    engine = make_engine(f"sqlite:///{path}")
    init_db(engine)
    service = DecisionService(scorer=scorer, policy=LOGGING)
    rng = np.random.default_rng(6)
    with Session(engine) as session:
        for request in world.sample_requests(40, start=0.0, end=2.0, rng=rng):
            decision_id = str(uuid.UUID(bytes=rng.bytes(16), version=4))
            out = service.decide(
                session=session,
                request=decision_input(request, k=K, decision_id=decision_id),
                now=to_datetime(request.t),
            )
            slate = np.array([item.item_id for item in out.record.slate])
            outcome = world.respond(request, slate, rng)
            events = events_from_outcome(outcome, decision_id=decision_id)
            if events:
                record_events(session=session, events=events)
            world.record(outcome)
    return engine, scorer


@pytest.fixture(scope="module")
def window(logged: tuple[Engine, PopularityAffinityScorer]) -> LoggedWindow:
    return read_window(logged[0])


def test_replaying_the_logging_policy_gives_back_the_logged_propensities(
    logged: tuple[Engine, PopularityAffinityScorer], window: LoggedWindow
) -> None:
    replayed = replay_window(window, scorer=logged[1], policy=LOGGING, logging_policy=LOGGING)
    b = replayed.batch
    np.testing.assert_allclose(b.target_pscore, b.pscore, rtol=1e-12)
    np.testing.assert_allclose(b.target_pscore_slate, b.pscore_slate, rtol=1e-12)
    np.testing.assert_allclose(b.target_pscore_cascade, b.pscore_cascade, rtol=1e-12)
    np.testing.assert_allclose(b.target_pscore_item, K * b.pscore, rtol=1e-12)  # K/M uniform
    assert b.n_decisions == 40 and b.n_slots == K
    assert replayed.support["unsupported_mass"] == 0.0
    assert replayed.support["zero_target_share"] == 0.0


def test_every_slate_estimator_runs_on_replayed_logs(
    logged: tuple[Engine, PopularityAffinityScorer], window: LoggedWindow
) -> None:
    target = EpsilonGreedySlate(epsilon=0.2, pool=8)
    estimates = estimate_all(replay_batch(window, scorer=logged[1], policy=target))
    assert {"ipw", "snipw", "sips", "iips", "rips", "pi"} <= set(estimates)
    for name in ("sips", "iips", "rips", "pi"):
        e = estimates[name]
        assert np.isfinite(e.value) and e.lo <= e.value <= e.hi, name


def test_replayed_target_exploring_beyond_the_logging_pool_has_unsupported_mass(
    logged: tuple[Engine, PopularityAffinityScorer], window: LoggedWindow
) -> None:
    wide = EpsilonGreedySlate(epsilon=0.1)  # explores all candidates; the logs saw only 8
    support = replay_window(window, scorer=logged[1], policy=wide, logging_policy=LOGGING).support
    n = len(window.decisions["candidate_ids"][0])
    # Per slot the target puts ε/n on each of the n − 8 candidates the logs never show.
    assert support["unsupported_mass"] == pytest.approx(K * 0.1 * (n - 8) / n, rel=1e-9)
    assert support["unsupported_decisions_share"] == 1.0
    assert support["zero_target_share"] == 0.0


def test_support_flags_a_target_whose_slates_fall_outside_the_logging_pool() -> None:
    """The FM demo's failure: ε-greedy logging explored the top 5 of the old scores; the new
    model's greedy slate and pool are elsewhere."""
    old = np.array([9.0, 8, 7, 6, 5, 4, 3, 2, 1, 0])
    new = old[::-1].copy()
    logging = EpsilonGreedySlate(epsilon=0.1, pool=5)
    outside = EpsilonGreedySlate(epsilon=0.1, pool=5)
    p = logging.marginals(old, K)
    q_out = outside.marginals(new, K)
    q_in = outside.marginals(old + 0.5 * np.arange(10) / 10, K)  # reorders inside the pool
    assert unsupported_mass(p, q_out) == pytest.approx(K, abs=1e-12)  # all of it
    assert unsupported_mass(p, q_in) == 0.0
    d = support_diagnostics(logging_marginals=[p, p], target_marginals=[q_out, q_in])
    assert d["unsupported_mass"] == pytest.approx(K / 2)
    assert d["unsupported_share"] == pytest.approx(0.5)
    assert d["unsupported_decisions_share"] == 0.5
    assert d["unsupported_max"] == pytest.approx(K)


def test_support_diagnostics_refuse_mismatched_inputs() -> None:
    p = np.full((2, 4), 0.25)
    with pytest.raises(ValueError, match="given together"):
        support_diagnostics(logging_marginals=[p])
    with pytest.raises(ValueError, match=r"decision 0: .*same candidates"):
        support_diagnostics(logging_marginals=[p], target_marginals=[np.full((2, 5), 0.2)])


def test_replay_refuses_a_logged_item_outside_the_candidates(
    logged: tuple[Engine, PopularityAffinityScorer], window: LoggedWindow
) -> None:
    slates = window.slates.copy()
    slates.loc[0, "item_id"] = 10_000
    broken = dataclasses.replace(window, slates=slates)
    with pytest.raises(ValueError, match="not among its candidates"):
        replay_batch(broken, scorer=logged[1], policy=LOGGING)


def test_production_replays_as_logged_and_shares_the_windows_outcome_model(
    logged: tuple[Engine, PopularityAffinityScorer], window: LoggedWindow
) -> None:
    from loop.ope_targets import (
        PRODUCTION,
        TargetPolicy,
        fit_window_model,
        replay_logged,
        replay_targets,
    )

    model = fit_window_model(window, seed=3)
    production = replay_logged(window, model=model)
    assert production.name == PRODUCTION, production.unsupported_mass
    assert production.unsupported_mass == 0.0, production.unsupported_mass
    b = production.batch
    np.testing.assert_array_equal(b.weight, np.ones(b.n_rows))
    np.testing.assert_allclose(b.target_pscore_cascade, b.pscore_cascade, rtol=0)
    np.testing.assert_allclose(b.target_pscore_slate, b.pscore_slate, rtol=0)
    # v̂ over the logging policy's own marginals; on-policy, DR is the mean reward plus v̂ − q̂
    dr = estimate_all(b)["dr"].value
    per_decision = (b.reward + b.v_hat - b.q_hat).sum() / b.n_decisions
    assert dr == pytest.approx(per_decision, rel=1e-12)
    target = TargetPolicy("t", logged[1], EpsilonGreedySlate(epsilon=0.3, pool=8))
    (replayed,) = replay_targets(window, [target], model=model)
    (alone,) = replay_targets(window, [target], reward_model="logistic", seed=3)
    # one outcome model per window: every policy of the window gets the same q̂, and fitting it
    # again with the same seed gives the same numbers
    np.testing.assert_array_equal(replayed.batch.q_hat, b.q_hat)
    np.testing.assert_allclose(alone.batch.v_hat, replayed.batch.v_hat, rtol=1e-12)
    assert replayed.batch.v_hat_cascade is not None


@pytest.mark.parametrize(
    ("training", "inside"),
    [
        (None, None),
        ({"first": "2000-01-01T00:00:00+00:00"}, None),
        ({"first": "2000-01-01T00:00:00", "last": "2000-02-01T00:00:00"}, None),
        ({"first": "2000-01-01T00:00:00+00:00", "last": "2100-01-01T00:00:00+00:00"}, 40),
    ],
)
def test_training_overlap_counts_the_windows_decisions_the_model_was_trained_on(
    window: LoggedWindow, training: dict | None, inside: int | None
) -> None:
    from loop.ope_eval import training_overlap

    overlap = training_overlap(window, training)
    if inside is None:
        assert overlap is None
    else:
        assert overlap is not None and overlap[0] == inside
        assert f"{inside} of the window's 40 decisions" in overlap[1]
