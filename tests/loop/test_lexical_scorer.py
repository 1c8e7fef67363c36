"""Search in BM25 order as a lexical engine serves it (loop.lexical_scorer), and near matches in
the lexical index (loop.retrieval): a partial or misspelled query still finds its title."""

from __future__ import annotations

import numpy as np
import pytest

from fm_core import PopularityAffinityScorer, ScoreRequest
from loop.lexical_scorer import LexicalFirstScorer
from loop.retrieval import LexicalIndex
from loop.sim_bridge import catalog_from_world
from sim import World, WorldConfig


@pytest.fixture(scope="module")
def world() -> World:
    return World(WorldConfig(seed=4, n_items=200, n_users=50))


def late(world: World) -> float:
    return float(catalog_from_world(world).release_time.max()) + 1.0


def test_search_is_scored_in_bm25_order_and_home_by_the_wrapped_scorer(world: World) -> None:
    catalog = catalog_from_world(world)
    base = PopularityAffinityScorer(catalog)
    scorer = LexicalFirstScorer(base)
    title = " ".join(world.title_words(17))
    items = catalog.item_ids[:60]
    search = ScoreRequest(user_id="u1", time=late(world), surface="search", query=title)
    home = ScoreRequest(user_id="u1", time=late(world))
    search_scores, home_scores = scorer.score([search, home], [items, items])
    assert items[int(np.argmax(search_scores))] == 17
    assert np.all((search_scores > 0) & (search_scores < 1))
    np.testing.assert_array_equal(home_scores, base.score([home], [items])[0])
    assert scorer.model_version.endswith("+bm25")


@pytest.mark.parametrize("typed", ["prefix", "typo"])
def test_a_partial_or_misspelled_word_still_finds_its_title(world: World, typed: str) -> None:
    index = LexicalIndex(catalog_from_world(world))
    words = world.title_words(23)
    longest = max(words, key=len)
    swapped = longest[1] + longest[0] + longest[2:]
    changed = longest[:3] if typed == "prefix" else swapped
    query = " ".join(changed if w == longest else w for w in words)
    found = index.search(query, time=late(world), limit=3)
    assert 23 in found
    exact = index.scores(" ".join(words))
    assert exact[23] > index.scores(query)[23] > 0  # a near word counts less than the word
