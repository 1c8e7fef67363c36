"""The fm_core baseline (PopularityAffinityScorer) on a small simulated world: valid scores, a
ranking that beats random against the world's truth, calibration at the top position,
point-in-time popularity, persistence, and ItemCatalog validation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sim_logs import DAY, T0, K, UniformLogging, impressions

from fm_core import ItemCatalog, PopularityAffinityScorer, ScoreRequest
from fm_core.impressions import TrainingImpressions
from loop.sim_bridge import catalog_from_world
from sim import GENRES, Request, World, WorldConfig


@pytest.fixture(scope="module")
def trained() -> dict:
    world = World(WorldConfig(seed=11, n_items=120, n_users=80))
    catalog = catalog_from_world(world)
    sim = UniformLogging(world, seed=1)
    train = sim.run(0.0, 30.0, 6000)
    scorer = PopularityAffinityScorer(catalog)
    scorer.fit(impressions(train), model_version="test")

    # Held out: the next 10 days. Before each request's outcome is recorded, compare the
    # world's value of the scorer's greedy top-K with that of the random slate shown.
    greedy_value, random_value, top_prediction, top_truth = [], [], [], []

    def evaluate(request: Request, score_request: ScoreRequest, slate: np.ndarray) -> None:
        available = world.available(request.t)
        scores = scorer.score([score_request], [available])[0]
        top = available[np.lexsort((available, -scores))][:K]
        greedy_value.append(world.expected_reward(request, top))
        random_value.append(world.expected_reward(request, slate))
        top_prediction.append(scorer.score([score_request], [slate[:1]])[0][0])
        top_truth.append(world.item_rewards(request, slate[:1])[0])  # θ_0 = 1

    held_out = sim.run(30.0, 40.0, 4000, before_record=evaluate)
    return {
        "world": world,
        "catalog": catalog,
        "scorer": scorer,
        "train": train,
        "held_out": held_out,
        "greedy_value": np.array(greedy_value),
        "random_value": np.array(random_value),
        "top_prediction": np.array(top_prediction),
        "top_truth": np.array(top_truth),
    }


@pytest.mark.slow
def test_scores_are_probabilities(trained: dict) -> None:
    scorer, held_out = trained["scorer"], trained["held_out"]
    available = trained["world"].available(40.0)
    scores = scorer.score(held_out.score_requests[:50], [available] * 50)
    for s in scores:
        assert s.shape == available.shape
        assert np.all(np.isfinite(s)) and np.all((s > 0.0) & (s < 1.0))
    # Scores depend on the request: not every user gets the same vector.
    assert not all(np.allclose(scores[0], s) for s in scores[1:])


@pytest.mark.slow
def test_fitted_scorer_ranks_better_than_random_against_the_truth(trained: dict) -> None:
    greedy, random = trained["greedy_value"], trained["random_value"]
    diff = greedy - random
    se = diff.std(ddof=1) / np.sqrt(diff.size)
    print(f"greedy top-{K} value {greedy.mean():.4f}, random {random.mean():.4f}, se {se:.4f}")
    assert diff.mean() > 10 * se
    assert greedy.mean() > 1.5 * random.mean()


@pytest.mark.slow
def test_untrained_scorer_is_a_weaker_ranker(trained: dict) -> None:
    """The fitted model beats the popularity-only prior it starts from (which knows no plays)."""
    world, held_out = trained["world"], trained["held_out"]
    untrained = PopularityAffinityScorer(trained["catalog"])
    values = []
    pairs = zip(held_out.requests[:500], held_out.score_requests[:500], strict=True)
    for request, score_request in pairs:
        available = world.available(request.t)
        scores = untrained.score([score_request], [available])[0]
        values.append(
            world.expected_reward(request, available[np.lexsort((available, -scores))][:K])
        )
    assert trained["greedy_value"][:500].mean() > np.mean(values)


@pytest.mark.slow
def test_predicted_top_play_rate_is_calibrated(trained: dict) -> None:
    predicted = trained["top_prediction"]
    observed = trained["held_out"].played[:, 0].astype(np.float64)
    truth = trained["top_truth"]
    print(
        f"top play rate: observed {observed.mean():.4f} ({int(observed.sum())} plays), "
        f"world truth {truth.mean():.4f}, predicted {predicted.mean():.4f}"
    )
    # Against the plays: ~110 plays of 4,000 carry a relative noise of ~10%, so the tolerance
    # is 4.5 binomial standard errors under the predictions, not a fixed 25%.
    se = np.sqrt(np.sum(predicted * (1 - predicted))) / predicted.size
    assert abs(observed.mean() - predicted.mean()) < 4.5 * se
    # Against the world's exact P(play | shown at the top) for the same impressions, which has
    # no outcome noise: within 25% relative.
    assert abs(predicted.mean() / truth.mean() - 1.0) < 0.25


def test_point_in_time_popularity_counts_only_earlier_plays() -> None:
    catalog = ItemCatalog(
        item_ids=np.array([3, 7, 9]),
        genres=np.eye(3, dtype=bool),
        release_time=np.full(3, T0 - 100 * DAY),
    )
    scorer = PopularityAffinityScorer(catalog)
    t_request = T0 + 20 * DAY + 0.25
    request = ScoreRequest(user_id="u1", time=t_request)

    def counts(play_items: list[int], play_times: list[float]) -> tuple[np.ndarray, np.ndarray]:
        data = TrainingImpressions(
            requests=[request],
            request_index=np.zeros(3, dtype=np.int64),
            item_ids=np.array([3, 7, 9]),
            positions=np.arange(3),
            labels=np.zeros(3),
            play_item_ids=np.array(play_items, dtype=np.int64),
            play_times=np.array(play_times, dtype=np.float64),
        )
        return scorer._point_in_time_popularity(data)

    base_items = [7, 7, 9, 3, 7]
    base_times = [t_request - DAY, t_request - 60.0, t_request - 1.0, T0, t_request - 0.5]
    popularity, totals = counts(base_items, base_times)
    np.testing.assert_array_equal(popularity, [1, 3, 1])
    np.testing.assert_array_equal(totals, [5, 5, 5])
    # Plays after the request, or at the same instant, change nothing.
    later = counts(
        [*base_items, 7, 9, 3], [*base_times, t_request + 1.0, t_request, t_request + DAY]
    )
    np.testing.assert_array_equal(later[0], popularity)
    np.testing.assert_array_equal(later[1], totals)
    # A play just before it counts, for its own item only.
    earlier = counts([*base_items, 9], [*base_times, t_request - 0.001])
    np.testing.assert_array_equal(earlier[0], [1, 3, 2])
    np.testing.assert_array_equal(earlier[1], [6, 6, 6])
    # Plays of items the catalog does not know are ignored.
    unknown = counts([*base_items, 42], [*base_times, t_request - 5.0])
    np.testing.assert_array_equal(unknown[0], popularity)


@pytest.mark.parametrize("offset", [-0.01, 0.01, -1e-6])
def test_point_in_time_popularity_is_exact_for_large_catalogs(offset: float) -> None:
    """With 200,000 items and POSIX-second times a play 10 ms from the request must still fall
    on the right side of it, for the item count and for the total alike."""
    n = 200_000
    catalog = ItemCatalog(
        item_ids=np.arange(n), genres=np.ones((n, 2), dtype=bool), release_time=np.zeros(n)
    )
    t_request = T0 + 20 * DAY + 0.3
    data = TrainingImpressions(
        requests=[ScoreRequest(user_id="u1", time=t_request)],
        request_index=np.zeros(2, dtype=np.int64),
        item_ids=np.array([n - 1, n - 2]),
        positions=np.arange(2),
        labels=np.zeros(2),
        play_item_ids=np.array([n - 1]),
        play_times=np.array([t_request + offset]),
    )
    popularity, totals = PopularityAffinityScorer(catalog)._point_in_time_popularity(data)
    expected = 1.0 if offset < 0 else 0.0
    np.testing.assert_array_equal(popularity, [expected, 0.0])
    np.testing.assert_array_equal(totals, [expected, expected])


@pytest.mark.slow
def test_point_in_time_popularity_in_training_matches_a_direct_count(trained: dict) -> None:
    train, scorer = trained["train"], trained["scorer"]
    data = impressions(train)
    popularity, totals = scorer._point_in_time_popularity(data)
    rng = np.random.default_rng(0)
    for row in rng.choice(data.item_ids.size, size=200, replace=False):
        t = data.requests[data.request_index[row]].time
        item = data.item_ids[row]
        assert popularity[row] == np.sum((data.play_item_ids == item) & (data.play_times < t))
        assert totals[row] == np.sum(data.play_times < t)


@pytest.mark.slow
def test_save_load_round_trip_gives_identical_scores(trained: dict, tmp_path: Path) -> None:
    scorer, held_out = trained["scorer"], trained["held_out"]
    path = scorer.save(tmp_path / "models" / "baseline.npz")
    loaded = PopularityAffinityScorer.load(path)
    assert loaded.model_version == "test"
    available = trained["world"].available(40.0)
    requests = held_out.score_requests[:20]
    for a, b in zip(
        scorer.score(requests, [available] * 20),
        loaded.score(requests, [available] * 20),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)
    assert loaded.catalog.tokens == scorer.catalog.tokens
    assert loaded.catalog.genre_names == GENRES


def test_loading_a_file_of_another_kind_raises(tmp_path: Path) -> None:
    other = tmp_path / "other.npz"
    np.savez(other, meta=np.array(json.dumps({"kind": "something_else"})), coef=np.zeros(3))
    with pytest.raises(ValueError, match="is not a popularity_affinity model"):
        PopularityAffinityScorer.load(other)
    no_meta = tmp_path / "no_meta.npz"
    np.savez(no_meta, coef=np.zeros(3))
    with pytest.raises(ValueError, match=r"no_meta\.npz is not a popularity_affinity model"):
        PopularityAffinityScorer.load(no_meta)
    array = tmp_path / "array.npy"
    np.save(array, np.zeros(3))
    with pytest.raises(ValueError, match=r"array\.npy is not a popularity_affinity model"):
        PopularityAffinityScorer.load(array)
    text = tmp_path / "model.txt"
    text.write_text("not a model\n")
    with pytest.raises(ValueError, match=r"model\.txt is not a popularity_affinity model"):
        PopularityAffinityScorer.load(text)
    with pytest.raises(FileNotFoundError):
        PopularityAffinityScorer.load(tmp_path / "missing.npz")


def test_catalog_rows_raise_naming_an_unknown_id() -> None:
    catalog = ItemCatalog(
        item_ids=np.array([2, 5, 11]),
        genres=np.zeros((3, 4), dtype=bool),
        release_time=np.zeros(3),
    )
    np.testing.assert_array_equal(catalog.rows(np.array([11, 2, 5])), [2, 0, 1])
    for unknown in (4, 0, 12):
        with pytest.raises(KeyError, match=f"unknown item id {unknown}"):
            catalog.rows(np.array([2, unknown]))
    np.testing.assert_array_equal(catalog.known(np.array([2, 4, 12, 11])), [1, 0, 0, 1])


@pytest.mark.parametrize("first", [0, 7])
def test_catalog_rows_of_a_run_of_ids(first: int) -> None:
    """Ids first..first+4 are looked up by offset; anything outside still raises by name."""
    catalog = ItemCatalog(
        item_ids=np.arange(first, first + 5),
        genres=np.zeros((5, 4), dtype=bool),
        release_time=np.zeros(5),
    )
    np.testing.assert_array_equal(catalog.rows(np.array([first + 4, first, first + 2])), [4, 0, 2])
    assert catalog.rows(np.array([], dtype=np.int64)).size == 0
    for unknown in (first - 1, first + 5, -1):
        with pytest.raises(KeyError, match=f"unknown item id {unknown}"):
            catalog.rows(np.array([first, unknown]))


@pytest.mark.parametrize("ids", [[3, 1, 2], [1, 2, 2], [[1, 2], [3, 4]]])
def test_catalog_rejects_unsorted_or_duplicate_ids(ids: list) -> None:
    ids = np.array(ids)
    with pytest.raises(ValueError, match="item_ids must be a 1-D array of sorted, unique ids"):
        ItemCatalog(item_ids=ids, genres=np.zeros((3, 4), bool), release_time=np.zeros(3))
