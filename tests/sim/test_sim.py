"""The simulated world: deterministic, skewed, position- and context-dependent, and its ground
truth (expected reward, oracle slate, policy value) agrees with Monte Carlo over ``respond``."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
from scipy.stats import spearmanr

from sim import GENRES, Request, World, WorldConfig

K = 10
N_RANDOM_REQUESTS = 20_000
Z_MAX = 4.5  # Monte-Carlo agreement, in standard errors


def play_sources(outcome_plays: tuple) -> tuple[int, int]:
    """(recommendation plays, search plays) of one outcome."""
    search = sum(p.source == "search" for p in outcome_plays)
    return len(outcome_plays) - search, search


def random_slate(world: World, request: Request, k: int, rng: np.random.Generator) -> np.ndarray:
    return rng.choice(world.available(request.t), size=k, replace=False)


@pytest.fixture(scope="module")
def world() -> World:
    return World(WorldConfig(seed=3))


@pytest.fixture(scope="module")
def uniform_logs(world: World) -> dict[str, np.ndarray | list[Request]]:
    """Uniformly random K-slates over the available items, shown for 20,000 requests (no
    ``record``: every request sees the same world state)."""
    rng = np.random.default_rng(7)
    requests = world.sample_requests(N_RANDOM_REQUESTS, start=0.0, end=60.0, rng=rng)
    played = np.zeros((len(requests), K), dtype=bool)
    item_plays = np.zeros(world.catalog.n_items)
    sources = np.zeros(2)  # rec, search
    for j, request in enumerate(requests):
        outcome = world.respond(request, random_slate(world, request, K, rng), rng)
        played[j] = outcome.played
        for play in outcome.plays:
            item_plays[play.item] += 1
        sources += play_sources(outcome.plays)
    return {
        "requests": requests,
        "played": played,
        "item_plays": item_plays,
        "sources": sources,
    }


# ---- determinism and size -------------------------------------------------------------------


def assert_outcomes_equal(a, b) -> None:
    for name in ("slate", "examined", "played", "reward", "search_results"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.plays == b.plays
    assert (a.intent, a.query) == (b.intent, b.query)


def test_same_seed_gives_identical_catalog_requests_and_outcomes() -> None:
    a, b = World(WorldConfig(seed=3)), World(WorldConfig(seed=3))
    for field in dataclasses.fields(a.catalog):
        x, y = getattr(a.catalog, field.name), getattr(b.catalog, field.name)
        if field.name == "title_tokens":
            assert all(np.array_equal(u, v) for u, v in zip(x, y, strict=True))
        else:
            np.testing.assert_array_equal(x, y, err_msg=field.name)
    requests_a = a.sample_requests(200, start=0.0, end=10.0, rng=np.random.default_rng(11))
    requests_b = b.sample_requests(200, start=0.0, end=10.0, rng=np.random.default_rng(11))
    assert requests_a == requests_b
    rng_a, rng_b = np.random.default_rng(12), np.random.default_rng(12)
    for request in requests_a:
        slate = a.oracle_slate(request, K)
        assert_outcomes_equal(a.respond(request, slate, rng_a), b.respond(request, slate, rng_b))


def test_different_seed_gives_different_catalog() -> None:
    a, b = World(WorldConfig(seed=3)), World(WorldConfig(seed=4))
    assert not np.array_equal(a.catalog.popularity, b.catalog.popularity)
    assert not np.array_equal(a.catalog.genres, b.catalog.genres)
    assert not np.allclose(a.catalog.release_day, b.catalog.release_day)


def test_world_size_follows_config() -> None:
    world = World(WorldConfig(seed=1, n_items=57, n_users=23))
    assert world.catalog.n_items == 57
    assert world.catalog.genres.shape[0] == 57 and world.catalog.popularity.size == 57
    assert world.users.n_users == 23
    requests = world.sample_requests(300, start=0.0, end=5.0, rng=np.random.default_rng(0))
    assert len(requests) == 300
    users = {r.user for r in requests}
    assert users <= set(range(23)) and len(users) > 10
    assert all(0.0 <= r.t < 5.0 for r in requests)
    assert [r.t for r in requests] == sorted(r.t for r in requests)


# ---- the world's statistical properties ---------------------------------------------------------


def test_plays_are_skewed_toward_popular_items(world: World, uniform_logs: dict) -> None:
    # Observed with seed 3 and 20,000 uniform random 10-slates: the top 10% of items take ~0.33
    # of the plays (±0.003 over sampling seeds); with popularity_weight=0 it is ~0.165.
    item_plays = uniform_logs["item_plays"]
    top = np.sort(item_plays)[::-1][: world.catalog.n_items // 10]
    share = top.sum() / item_plays.sum()
    assert share > 0.30, f"top-10% share of plays {share:.3f}"
    rho = spearmanr(item_plays, world.catalog.popularity).statistic
    assert rho > 0.3, f"Spearman(plays, popularity) = {rho:.3f}"


def test_play_rate_by_position_follows_examination_curve(world: World, uniform_logs: dict) -> None:
    played = uniform_logs["played"].astype(np.float64)
    n = played.shape[0]
    theta = world.examination(K)
    rates = played.mean(axis=0)
    # Coarse monotonicity: top > second > the mean of the bottom half.
    assert rates[0] > rates[1] > rates[5:].mean()
    # Under uniform slates every position sees the same item mix, so rate_k / rate_0 estimates
    # θ_k / θ_0. Delta-method standard error of a ratio of means over requests.
    for cols in [[1], [2], [3, 4], [5, 6, 7, 8, 9]]:
        a, b = played[:, cols].mean(axis=1), played[:, 0]
        ratio = a.mean() / b.mean()
        se = np.sqrt(np.var(a - ratio * b, ddof=1) / n) / b.mean()
        expected = theta[cols].mean() / theta[0]
        assert abs(ratio - expected) < Z_MAX * se, (cols, ratio, expected, se)
    # The same data rules out the other examination curve (1/(k+1)) by a wide margin.
    inverse = np.mean(1.0 / (np.arange(5, 10) + 1.0))
    a, b = played[:, 5:].mean(axis=1), played[:, 0]
    ratio = a.mean() / b.mean()
    se = np.sqrt(np.var(a - ratio * b, ddof=1) / n) / b.mean()
    assert ratio - inverse > 8 * se


def test_search_share_is_real_and_lower_under_oracle_slates(
    world: World, uniform_logs: dict
) -> None:
    rec, search = uniform_logs["sources"]
    random_share = search / (rec + search)
    # Observed ~0.24 with seed 3.
    assert 0.05 < random_share < 0.60, random_share
    rng = np.random.default_rng(8)
    oracle = np.zeros(2)
    for request in uniform_logs["requests"][:3000]:
        oracle += play_sources(world.respond(request, world.oracle_slate(request, K), rng).plays)
    oracle_share = oracle[1] / oracle.sum()
    # Observed ~0.03 (200 of ~6,500 plays); the shares differ by far more than their noise.
    assert oracle_share < random_share / 2, (oracle_share, random_share)


# ---- context, cold start, reconsumption ---------------------------------------------------------


def test_kids_titles_play_more_in_the_afternoon_and_on_tablets() -> None:
    world = World(WorldConfig(seed=6))  # 52 kids titles (seed 3 has only 2)
    kids = np.flatnonzero(world.catalog.genres[:, GENRES.index("kids")])
    assert kids.size >= 20
    base = world.sample_requests(8, start=0.0, end=1.0, rng=np.random.default_rng(4))
    for request in base:
        afternoon = dataclasses.replace(request, daypart=1, local_hour=15.0)
        night = dataclasses.replace(request, daypart=3, local_hour=23.5)
        assert (
            world.play_probability(afternoon, kids).mean()
            > world.play_probability(night, kids).mean()
        )
        tablet = dataclasses.replace(request, device=3)
        tv = dataclasses.replace(request, device=0)
        assert world.play_probability(tablet, kids).mean() > world.play_probability(tv, kids).mean()


def test_context_moves_play_probability_of_matching_genres_only_through_context(
    world: World,
) -> None:
    # The same request at the same daypart and device gives the same probabilities: the
    # differences above come from context, not from anything else changing.
    request = world.sample_requests(1, start=0.0, end=1.0, rng=np.random.default_rng(5))[0]
    items = world.available(request.t)
    same = dataclasses.replace(request)
    np.testing.assert_array_equal(
        world.play_probability(request, items), world.play_probability(same, items)
    )
    other_daypart = dataclasses.replace(request, daypart=(request.daypart + 2) % 4)
    assert not np.allclose(
        world.play_probability(request, items), world.play_probability(other_daypart, items)
    )


def test_items_arrive_over_time_and_oracle_never_shows_unreleased_items(world: World) -> None:
    release = world.catalog.release_day
    assert np.any(release > 0.0)
    horizon = world.config.horizon_days
    sizes = [world.available(t).size for t in (-1.0, 0.0, horizon / 4, horizon / 2, horizon)]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]
    assert sizes[-1] == world.catalog.n_items
    assert set(world.available(0.0)) == set(np.flatnonzero(release <= 0.0))
    n = world.catalog.n_items
    requests = world.sample_requests(50, start=0.0, end=horizon, rng=np.random.default_rng(6))
    for request in requests:
        everything = world.oracle_slate(request, n)  # the oracle ranks all it may show
        assert np.all(release[everything] <= request.t)
        assert everything.size == world.available(request.t).size


def test_recording_a_play_lowers_its_play_probability_by_reconsumption() -> None:
    world = World(WorldConfig(seed=5, n_items=100, n_users=20))
    rng = np.random.default_rng(0)
    request = world.sample_requests(1, start=1.0, end=2.0, rng=rng)[0]
    slate = world.oracle_slate(request, K)
    before = world.play_probability(request, slate)
    rewards_before = world.item_rewards(request, slate)
    for _ in range(100):
        outcome = world.respond(request, slate, rng)
        if outcome.played.any():
            break
    assert outcome.played.any()
    # respond is pure
    np.testing.assert_array_equal(world.play_probability(request, slate), before)
    world.record(outcome)
    after = world.play_probability(request, slate)
    seen = np.isin(slate, [p.item for p in outcome.plays])
    np.testing.assert_allclose(after[seen], before[seen] * world.config.reconsumption, rtol=1e-12)
    np.testing.assert_array_equal(after[~seen], before[~seen])
    assert np.all(world.item_rewards(request, slate)[seen] < rewards_before[seen])
    # other users are unaffected
    other = dataclasses.replace(request, user=(request.user + 1) % world.users.n_users)
    fresh = World(WorldConfig(seed=5, n_items=100, n_users=20))
    np.testing.assert_array_equal(
        world.play_probability(other, slate), fresh.play_probability(other, slate)
    )


# ---- ground truth --------------------------------------------------------------------------------


def monte_carlo_rewards(
    world: World, request: Request, slate: np.ndarray, n: int, seed: int
) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.array([world.respond(request, slate, rng).reward for _ in range(n)])


MC_DRAWS = 20_000
MC_K = 5


MC_WORLDS = {
    "play": WorldConfig(seed=3, n_items=150, n_users=60),
    "completion": WorldConfig(seed=3, n_items=150, n_users=60, reward="completion"),
    # Most sessions carry an intent and a small catalog concentrates it: the intent term of
    # r(x, i) moves V by 10 to 40 standard errors here, against ~2 in the default world.
    "intent": WorldConfig(seed=3, n_items=40, n_users=20, intent_rate=0.8, intent_play=0.95),
}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("world_name", "request_index", "slate_kind"),
    [
        ("play", 0, "oracle"),
        ("play", 0, "random"),
        ("completion", 0, "oracle"),
        ("completion", 1, "random"),
        ("intent", 0, "oracle"),
        ("intent", 1, "random"),
        ("intent", 1, "oracle-after-record"),
    ],
)
def test_expected_reward_matches_monte_carlo(
    world_name: str, request_index: int, slate_kind: str
) -> None:
    world = World(MC_WORLDS[world_name])
    rng = np.random.default_rng(21)
    request = world.sample_requests(2, start=0.0, end=30.0, rng=rng)[request_index]
    if slate_kind == "random":
        slate = random_slate(world, request, MC_K, rng)
    else:
        slate = world.oracle_slate(request, MC_K)
    if slate_kind == "oracle-after-record":
        # The user has already played some of the slate: reconsumption enters both the
        # ordinary and the intent play probability.
        while not (outcome := world.respond(request, slate, rng)).played.any():
            pass
        world.record(outcome)
    rewards = monte_carlo_rewards(world, request, slate, MC_DRAWS, seed=100 + request_index)

    total = rewards.sum(axis=1)
    se = total.std(ddof=1) / np.sqrt(MC_DRAWS)
    truth = world.expected_reward(request, slate)
    assert abs(total.mean() - truth) < Z_MAX * se, (total.mean(), truth, se)

    # Per position: E[reward at k] = θ_k r(x, s_k). Rewards are in [0, 1], so the variance is at
    # most m(1 − m) under the null (exact for plays); this bound stays valid for rare plays,
    # where the sample variance of a handful of hits is not.
    per_position = world.examination(MC_K) * world.item_rewards(request, slate)
    np.testing.assert_allclose(per_position.sum(), truth, rtol=1e-12)
    se_k = np.sqrt(per_position * (1.0 - per_position) / MC_DRAWS)
    z = (rewards.mean(axis=0) - per_position) / se_k
    assert np.all(np.abs(z) < Z_MAX), z


@pytest.mark.slow
def test_policy_value_of_uniform_marginals_matches_monte_carlo_of_random_slates() -> None:
    world = World(WorldConfig(seed=3, n_items=150, n_users=60))
    rng = np.random.default_rng(22)
    request = world.sample_requests(1, start=0.0, end=30.0, rng=rng)[0]
    items = world.available(request.t)
    marginals = np.full((MC_K, items.size), 1.0 / items.size)
    truth = world.policy_value(request, items, marginals)
    totals = np.array(
        [
            world.respond(request, random_slate(world, request, MC_K, rng), rng).reward.sum()
            for _ in range(MC_DRAWS)
        ]
    )
    se = totals.std(ddof=1) / np.sqrt(MC_DRAWS)
    assert abs(totals.mean() - truth) < Z_MAX * se, (totals.mean(), truth, se)
    # The uniform policy's value is the mean item reward times Σθ, well below the oracle's.
    mean_r = world.item_rewards(request, items).mean()
    np.testing.assert_allclose(truth, mean_r * world.examination(MC_K).sum(), rtol=1e-12)
    assert truth < world.expected_reward(request, world.oracle_slate(request, MC_K))


def test_policy_value_of_a_deterministic_slate_equals_its_expected_reward(world: World) -> None:
    request = world.sample_requests(1, start=0.0, end=30.0, rng=np.random.default_rng(9))[0]
    items = world.available(request.t)
    slate = world.oracle_slate(request, K)
    marginals = np.zeros((K, items.size))
    marginals[np.arange(K), np.searchsorted(items, slate)] = 1.0
    np.testing.assert_allclose(
        world.policy_value(request, items, marginals),
        world.expected_reward(request, slate),
        rtol=1e-12,
    )


def test_oracle_slate_beats_random_slates_and_its_own_permutations(world: World) -> None:
    rng = np.random.default_rng(10)
    for request in world.sample_requests(5, start=0.0, end=60.0, rng=rng):
        oracle = world.oracle_slate(request, 5)
        best = world.expected_reward(request, oracle)
        random_values = [
            world.expected_reward(request, random_slate(world, request, 5, rng)) for _ in range(200)
        ]
        assert best >= max(random_values)
        assert best > np.mean(random_values)
        for perm in itertools.permutations(oracle):
            assert world.expected_reward(request, np.array(perm)) <= best * (1 + 1e-12)
        # sorted by item reward, best first
        r = world.item_rewards(request, oracle)
        assert np.all(np.diff(r) <= 0)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"n_items": 0}, "n_items"),
        ({"n_users": -1}, "n_users"),
        ({"intent_rate": 1.5}, "intent_rate"),
        ({"reconsumption": -0.1}, "reconsumption"),
        ({"horizon_days": 0.0}, "horizon_days"),
        ({"examination": "foo"}, "examination"),
        ({"reward": "clicks"}, "reward"),
    ],
)
def test_bad_world_config_raises_naming_the_field(overrides: dict, field: str) -> None:
    with pytest.raises(ValueError, match=rf"WorldConfig\.{field}"):
        WorldConfig(**overrides)


def test_popularity_feedback_makes_played_titles_more_appealing_to_everyone() -> None:
    import dataclasses

    from sim.world import Outcome, Play

    base = WorldConfig(seed=3, n_items=50, n_users=20)
    for feedback, rises in ((0.0, False), (0.5, True)):
        world = World(dataclasses.replace(base, popularity_feedback=feedback))
        rng = np.random.default_rng(0)
        requests = world.sample_requests(10, start=0.0, end=1.0, rng=rng)
        first = requests[0]
        other = next(q for q in requests if q.user != first.user)  # no reconsumption discount
        item = int(world.available(0.0)[0])
        before = world.play_probability(other, np.array([item]))[0]
        plays = tuple(Play(item=item, t=0.1, seconds=60.0, completion=1.0, source="rec",
                           position=0) for _ in range(5))  # fmt: skip
        world.record(
            Outcome(request=first, slate=np.array([item]), examined=np.array([True]),
                    played=np.array([True]), reward=np.array([1.0]), plays=plays)
        )  # fmt: skip
        after = world.play_probability(other, np.array([item]))[0]
        assert (after > before) == rises
        if not rises:
            assert after == before


def test_popularity_feedback_is_refused_outside_its_range() -> None:
    with pytest.raises(ValueError, match=r"popularity_feedback must be in \[0, 5\]"):
        WorldConfig(popularity_feedback=-0.1)
