"""The world's search and title surfaces: queries typed from an intent title, the opened title's
"more like this" row, their ground truth and sampled plays, deterministic per seed."""

from __future__ import annotations

import numpy as np
import pytest

from sim import World, WorldConfig
from sim.queries import QUERY_KINDS, make_query, typo
from sim.surfaces import latent_cosine


@pytest.fixture(scope="module")
def world() -> World:
    return World(WorldConfig(seed=3, n_items=200, n_users=100))


def requests_on(world: World, surface: str, n: int, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    return world.sample_surface_requests(n, start=0.0, end=5.0, rng=rng, surface=surface)


def test_surface_requests_are_deterministic_per_seed(world: World) -> None:
    first = requests_on(world, "search", 30, seed=7)
    again = requests_on(world, "search", 30, seed=7)
    assert first == again
    assert [r.query for r in first] != [r.query for r in requests_on(world, "search", 30, seed=8)]


def test_a_search_query_is_typed_from_its_intent_title(world: World) -> None:
    requests = requests_on(world, "search", 300)
    kinds = {r.query_kind for r in requests}
    assert kinds == set(QUERY_KINDS)
    for r in requests:
        words = world.title_words(r.intent)
        typed = r.query.split()
        if r.query_kind == "exact":
            assert typed == words
        elif r.query_kind == "partial":
            assert 1 <= len(typed) <= len(words) and r.query != " ".join(words)
            assert all(any(w.startswith(t) for w in words) for t in typed)
        else:
            assert len(typed) == len(words)
            assert sum(t != w for t, w in zip(typed, words, strict=True)) == 1


def test_the_home_request_is_unchanged_by_the_surfaces(world: World) -> None:
    rng = np.random.default_rng(1)
    home = world.sample_requests(20, start=0.0, end=5.0, rng=rng)
    again = world.sample_surface_requests(
        20, start=0.0, end=5.0, rng=np.random.default_rng(1), surface="home"
    )
    assert home == again
    assert all(r.anchor is None and r.query is None for r in home)


def test_the_searched_title_is_the_best_result_by_the_truth(world: World) -> None:
    requests = requests_on(world, "search", 100)
    best = [int(world.oracle_slate(r, 1)[0]) for r in requests]
    assert np.mean([b == r.intent for b, r in zip(best, requests, strict=True)]) >= 0.95


def test_more_like_this_favours_titles_like_the_opened_one(world: World) -> None:
    for r in requests_on(world, "title", 20):
        items = np.setdiff1d(world.available(r.t), [r.source_item])
        rewards = world.item_rewards(r, items)  # a fresh world: nothing seen, P(play)
        cosine = latent_cosine(world.catalog.latent, r.source_item, items)
        lift = np.log(rewards / (1.0 - rewards)) - world.affinity(r, items)
        np.testing.assert_allclose(lift, world.config.title_similarity * cosine, atol=1e-9)


def test_plays_on_a_search_slate_follow_the_truth(world: World) -> None:
    request = requests_on(world, "search", 1, seed=4)[0]
    others = np.setdiff1d(world.available(request.t), [request.intent])[:4]
    slate = np.concatenate([[request.intent], others])
    rng = np.random.default_rng(0)
    played = np.mean([world.respond(request, slate, rng).played for _ in range(3000)], axis=0)
    truth = world.examination(5) * world.item_rewards(request, slate)
    np.testing.assert_allclose(played, truth, atol=0.03)
    outcome = world.respond(request, slate, np.random.default_rng(1))
    assert outcome.query == request.query and outcome.search_results.size == 0
    assert all(p.source == "rec" for p in outcome.plays)


def test_a_typo_changes_one_word_by_one_edit() -> None:
    rng = np.random.default_rng(0)
    for word in ("tenipi", "volu", "ab"):
        for _ in range(50):
            wrong = typo(word, rng)
            assert wrong != word and abs(len(wrong) - len(word)) <= 1


@pytest.mark.parametrize(
    ("words", "kind", "message"),
    [(["volu"], "fuzzy", "kind must be one of"), ([], "exact", "words must hold")],
)
def test_bad_query_input_is_refused(words: list[str], kind: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_query(words, kind, np.random.default_rng(0))


@pytest.mark.parametrize(
    ("field", "value"),
    [("query_kinds", (0.5, 0.5, 0.5)), ("query_kinds", (1.0, -0.5, 0.5)),
     ("title_similarity", -1.0), ("search_focus", 11.0)],
)  # fmt: skip
def test_bad_surface_settings_are_refused_by_name(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"WorldConfig.{field}"):
        WorldConfig(**{field: value})


def test_an_unknown_surface_is_refused_by_name(world: World) -> None:
    request = requests_on(world, "home", 1)[0]
    with pytest.raises(ValueError, match="surface must be one of"):
        world.surface_request(request, "carousel", np.random.default_rng(0))
    with pytest.raises(ValueError, match="surface must be one of"):
        requests_on(world, "searches", 1)
