"""The simulated world's ground truth, formula by formula on one request: the examination curve,
the play, intent and completion probabilities, r(x, i) for home and anchored requests and for
both reward kinds, V(x, s), a policy's value from its marginals, and the oracle's order."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from sim import Request, World, WorldConfig
from sim.surfaces import anchored_play_probability
from sim.world import examination_probabilities

FULL_WATCH_MEAN = (0.85 + 1.0) / 2
SAMPLE_WATCH_MEAN = (0.02 + 0.25) / 2


@pytest.fixture(scope="module")
def world() -> World:
    return World(WorldConfig(seed=11, n_items=60, n_users=10))


@pytest.fixture(scope="module")
def request_(world: World) -> Request:
    return world.sample_requests(1, start=30.0, end=31.0, rng=np.random.default_rng(2))[0]


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def test_examination_curves_by_hand() -> None:
    log = [1.0, 1 / math.log2(3), 0.5, 1 / math.log2(5)]
    np.testing.assert_allclose(examination_probabilities(4, "log"), log, rtol=1e-15)
    np.testing.assert_allclose(examination_probabilities(4, "inverse"), [1, 1 / 2, 1 / 3, 1 / 4])
    inverse = World(WorldConfig(seed=11, n_items=60, n_users=10, examination="inverse"))
    np.testing.assert_allclose(inverse.examination(3), [1, 1 / 2, 1 / 3])


def test_play_intent_and_completion_probabilities_from_the_affinity(
    world: World, request_: Request
) -> None:
    items = world.available(request_.t)[:8]
    logit = world.affinity(request_, items)
    np.testing.assert_allclose(world.play_probability(request_, items), sigmoid(logit), rtol=1e-14)
    completion = sigmoid(-0.5 + 0.5 * (logit - world.config.base_logit))
    np.testing.assert_allclose(
        world.completion_probability(request_, items), completion, rtol=1e-14
    )
    all_items, q = world.intent_distribution(request_)
    np.testing.assert_array_equal(all_items, world.available(request_.t))
    every = world.affinity(request_, all_items)
    np.testing.assert_allclose(q, np.exp(every) / np.exp(every).sum(), rtol=1e-12)


def home_reward(world: World, request: Request, items: np.ndarray) -> np.ndarray:
    """r(x, i) = [(1 − ρ q_i) p_i + ρ q_i p̃_i] · E[reward | play], written out."""
    c = world.config
    p = sigmoid(world.affinity(request, items))
    all_items, q_all = world.intent_distribution(request)
    q = np.array([q_all[list(all_items).index(i)] if i in all_items else 0.0 for i in items])
    play = (1 - c.intent_rate * q) * p + c.intent_rate * q * c.intent_play
    if c.reward == "play":
        return play
    done = world.completion_probability(request, items)
    return play * (done * FULL_WATCH_MEAN + (1 - done) * SAMPLE_WATCH_MEAN)


def test_item_rewards_on_home_for_available_and_unreleased_items(
    world: World, request_: Request
) -> None:
    available = world.available(request_.t)
    unreleased = np.setdiff1d(np.arange(world.catalog.n_items), available)
    assert unreleased.size and available.size > 6
    items = np.concatenate((available[[0, 3, -1]], unreleased[:2], available[[5]]))
    np.testing.assert_allclose(
        world.item_rewards(request_, items), home_reward(world, request_, items), rtol=1e-13
    )
    # an unreleased item is never the intent: its reward is the plain play probability
    np.testing.assert_allclose(
        world.item_rewards(request_, unreleased[:2]),
        world.play_probability(request_, unreleased[:2]),
        rtol=1e-14,
    )


def test_item_rewards_for_completion_weigh_plays_by_expected_watch(request_: Request) -> None:
    world = World(WorldConfig(seed=11, n_items=60, n_users=10, reward="completion"))
    items = world.available(request_.t)[:6]
    np.testing.assert_allclose(
        world.item_rewards(request_, items), home_reward(world, request_, items), rtol=1e-13
    )


@pytest.mark.parametrize("surface", ["search", "title"])
def test_item_rewards_on_anchored_surfaces(world: World, request_: Request, surface: str) -> None:
    anchor = int(world.available(request_.t)[4])
    field = "intent" if surface == "search" else "source_item"
    anchored = dataclasses.replace(request_, surface=surface, **{field: anchor})
    items = world.available(request_.t)[:7]
    c = world.config
    expected = anchored_play_probability(
        surface=surface,
        anchor=anchor,
        items=items,
        affinity=world.affinity(anchored, items),
        reconsumption=np.ones(items.size),
        latent=world.catalog.latent,
        similarity_weight=c.search_similarity if surface == "search" else c.title_similarity,
        intent_play=c.intent_play,
        search_focus=c.search_focus,
    )
    np.testing.assert_allclose(world.item_rewards(anchored, items), expected, rtol=1e-13)


def test_expected_reward_and_policy_value_by_hand(world: World, request_: Request) -> None:
    items = world.available(request_.t)[:5]
    r = world.item_rewards(request_, items)
    theta = examination_probabilities(3, "log")
    slate = items[[2, 0, 4]]
    assert world.expected_reward(request_, slate) == pytest.approx(theta @ r[[2, 0, 4]], rel=1e-13)
    marginals = np.array(
        [[0.5, 0.5, 0, 0, 0], [0.25, 0, 0.25, 0.5, 0], [0, 0.2, 0.3, 0.1, 0.4]]
    )  # (K=3, n=5)
    expected = sum(theta[k] * marginals[k] @ r for k in range(3))
    assert world.policy_value(request_, items, marginals) == pytest.approx(expected, rel=1e-13)


def test_oracle_slate_orders_by_reward_with_ties_by_item_id(
    world: World, request_: Request
) -> None:
    candidates = world.available(request_.t)[:9]
    r = world.item_rewards(request_, candidates)
    best = candidates[np.argsort(-r, kind="stable")][:4]
    np.testing.assert_array_equal(world.oracle_slate(request_, 4, candidates), best)
    everything = world.available(request_.t)
    rewards = world.item_rewards(request_, everything)
    np.testing.assert_array_equal(
        world.oracle_slate(request_, 3), everything[np.argsort(-rewards, kind="stable")][:3]
    )


def test_a_played_title_loses_reconsumption_in_its_play_and_its_intent_play() -> None:
    world = World(WorldConfig(seed=11, n_items=60, n_users=10))
    rng = np.random.default_rng(4)
    request = world.sample_requests(1, start=30.0, end=31.0, rng=rng)[0]
    slate = world.oracle_slate(request, 5)
    for _ in range(200):
        outcome = world.respond(request, slate, rng)
        if outcome.played.any():
            break
    world.record(outcome)
    seen = np.isin(slate, [p.item for p in outcome.plays])
    assert seen.any() and not seen.all()
    c = world.config
    factor = np.where(seen, c.reconsumption, 1.0)
    p = sigmoid(world.affinity(request, slate)) * factor
    all_items, q_all = world.intent_distribution(request)
    q = q_all[np.searchsorted(all_items, slate)]
    expected = (1 - c.intent_rate * q) * p + c.intent_rate * q * c.intent_play * factor
    np.testing.assert_allclose(world.play_probability(request, slate), p, rtol=1e-14)
    np.testing.assert_allclose(world.item_rewards(request, slate), expected, rtol=1e-13)


def test_item_rewards_for_titles_beyond_every_released_id(world: World) -> None:
    """Early on, the catalog's last ids are not released yet: they sort after every available
    id, and are still never the intent."""
    early = world.sample_requests(1, start=5.0, end=6.0, rng=np.random.default_rng(3))[0]
    available = world.available(early.t)
    assert available.max() < world.catalog.n_items - 1
    items = np.array([world.catalog.n_items - 1, int(available[0]), int(available.max())])
    np.testing.assert_allclose(
        world.item_rewards(early, items), home_reward(world, early, items), rtol=1e-13
    )


@pytest.mark.parametrize("surface", ["search", "title"])
def test_anchored_rewards_weigh_plays_by_expected_watch(request_: Request, surface: str) -> None:
    world = World(WorldConfig(seed=11, n_items=60, n_users=10, reward="completion"))
    anchor = int(world.available(request_.t)[4])
    field = "intent" if surface == "search" else "source_item"
    anchored = dataclasses.replace(request_, surface=surface, **{field: anchor})
    items = world.available(request_.t)[:7]
    done = world.completion_probability(anchored, items)
    expected_value = done * FULL_WATCH_MEAN + (1 - done) * SAMPLE_WATCH_MEAN
    plain = World(WorldConfig(seed=11, n_items=60, n_users=10))
    np.testing.assert_allclose(
        world.item_rewards(anchored, items),
        plain.item_rewards(anchored, items) * expected_value,
        rtol=1e-13,
    )


def test_titles_and_slates_given_as_floats_are_read_as_ids(world: World, request_: Request) -> None:
    items = world.available(request_.t)[:4]
    as_float = items.astype(np.float64)
    for method in (world.item_rewards, world.play_probability, world.completion_probability):
        np.testing.assert_array_equal(method(request_, as_float), method(request_, items))
    assert world.expected_reward(request_, as_float) == world.expected_reward(request_, items)
