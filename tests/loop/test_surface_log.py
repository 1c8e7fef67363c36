"""The world's home, search and title requests served through the decision service
(loop.surface_log): every surface's decisions reach the log with their query or opened title,
exact propensities and plays that name their decision, and train one ranker and specialists."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from explore import EpsilonGreedySlate
from fm_core import PopularityAffinityScorer
from loop.retrieval import RetrievalConfig
from loop.service import DecisionService
from loop.sim_bridge import catalog_from_world
from loop.surface_log import SurfaceServing, serve_surfaces
from loop.windows import LoggedWindow, read_window, training_impressions
from proplog.engine import init_db, make_engine
from sim import World, WorldConfig

SURFACES = ("home", "search", "title")
K = 5


def served_world(per_surface: int, seed: int = 2) -> tuple[World, LoggedWindow, SurfaceServing]:
    world = World(WorldConfig(seed=seed, n_items=150, n_users=80))
    rng = np.random.default_rng(seed)
    requests = []
    for surface in SURFACES:
        requests += world.sample_surface_requests(
            per_surface, start=0.0, end=4.0, rng=rng, surface=surface
        )
    requests.sort(key=lambda r: r.t)
    engine = make_engine("sqlite://")
    init_db(engine)
    service = DecisionService(
        scorer=PopularityAffinityScorer(catalog_from_world(world)),
        policy=EpsilonGreedySlate(epsilon=0.5),
    )
    served = serve_surfaces(
        world, engine, requests, service=service, k=K, rng=rng,
        retrieval=RetrievalConfig(search_cap=20, lexical_share=1.0),
    )  # fmt: skip
    window = read_window(engine)
    engine.dispose()
    return world, window, served


@pytest.fixture(scope="module")
def logged() -> tuple[World, LoggedWindow, SurfaceServing]:
    return served_world(120)


def test_every_surface_is_logged_with_its_context_and_exact_propensities(logged) -> None:
    _, window, served = logged
    decisions = window.decisions.set_index("decision_id")
    assert decisions["surface"].value_counts().to_dict() == {s: 120 for s in SURFACES}
    search = decisions[decisions["surface"] == "search"]
    assert search["query"].map(lambda q: isinstance(q, str) and len(q) > 0).all()
    title = decisions[decisions["surface"] == "title"]
    assert title["source_item"].notna().all()
    assert decisions[decisions["surface"] == "home"]["query"].isna().all()
    propensity = window.slates["propensity"].to_numpy()
    assert np.all((propensity > 0) & (propensity <= 1))
    assert window.slates["explored"].any()
    for decision_id in served.decision_ids["search"][:20]:  # a search's candidates match it
        candidates = decisions.loc[decision_id, "candidate_ids"]
        assert 0 < len(candidates) <= 20


def test_plays_on_search_and_title_slates_label_their_impressions(logged) -> None:
    _, window, served = logged
    data = training_impressions(window)
    surfaces = np.array([r.surface for r in data.requests])[data.request_index]
    slate_rows = np.asarray(data.positions) >= 0
    for surface in ("search", "title"):
        labelled = data.labels[(surfaces == surface) & slate_rows].sum()
        assert labelled == served.plays[surface] > 0
    searches = [r for r in data.requests if r.surface == "search"]
    assert all(r.query for r in searches)  # the ranker reads the query it was typed with


def test_requests_out_of_time_order_or_an_empty_slate_are_refused() -> None:
    world = World(WorldConfig(seed=0, n_items=50, n_users=20))
    requests = world.sample_requests(3, start=0.0, end=1.0, rng=np.random.default_rng(0))
    service = DecisionService(
        scorer=PopularityAffinityScorer(catalog_from_world(world)),
        policy=EpsilonGreedySlate(epsilon=0.5),
    )
    engine = make_engine("sqlite://")
    init_db(engine)
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="sorted by time"):
        serve_surfaces(world, engine, requests[::-1], service=service, k=K, rng=rng)
    with pytest.raises(ValueError, match="k must be >= 1"):
        serve_surfaces(world, engine, requests, service=service, k=0, rng=rng)


@pytest.mark.slow
def test_one_fm_trains_the_unified_ranker_and_a_specialist_per_surface(tmp_path: Path) -> None:
    from fm_core.fm_scorer import FMRankerScorer
    from fm_core.fm_scorer_fit import FMScorerConfig
    from fm_core.model import FMConfig
    from fm_core.ranker import RankerTrainConfig
    from fm_core.ranker_surfaces import fit_unified_and_specialists
    from fm_core.train_fm import TrainConfig

    world, window, _ = served_world(150, seed=5)
    data = training_impressions(window)
    config = FMScorerConfig(
        fm=FMConfig(d_model=16, n_layers=1, n_heads=2, max_len=32, dropout=0.1),
        fm_train=TrainConfig(epochs=1, batch_size=64, progress=False),
        ranker_train=RankerTrainConfig(epochs=1, progress=False),
    )
    models = fit_unified_and_specialists(data, catalog_from_world(world), config)
    assert set(models.specialists) == set(SURFACES)
    assert all(s.fm is models.unified.fm for s in models.specialists.values())
    unified = models.reports["unified"]
    assert set(unified.by_surface) == set(SURFACES)
    specialist_pairs = sum(models.reports[s].train_pairs for s in SURFACES)
    assert specialist_pairs == unified.train_pairs  # the same impressions, split by surface
    assert set(models.reports["search"].by_surface) == {"search"}
    assert set(models.unified.surface_calibrators) <= set(SURFACES)

    request = data.requests[next(j for j, r in enumerate(data.requests) if r.surface == "search")]
    candidates = [world.available(world.config.horizon_days)[:30]]
    scores = models.unified.score([request], candidates)[0]
    assert np.all((scores > 0) & (scores < 1))
    models.unified.surface_calibrators = {
        "search": models.unified.calibrator.__class__(method="temperature", scale=0.5, bias=-1.0)
    }
    again = FMRankerScorer.load(models.unified.save(tmp_path / "unified.npz"))
    assert set(again.surface_calibrators) == {"search"}
    np.testing.assert_allclose(
        again.score([request], candidates)[0],
        models.unified.score([request], candidates)[0],
        rtol=1e-5,
    )

    # OPE replays the unified ranker's policy on every surface's logged decisions
    from loop.ope_targets import TargetPolicy, replay_targets

    target = TargetPolicy("unified", models.unified, EpsilonGreedySlate(epsilon=0.2))
    (replayed,) = replay_targets(window, [target], reward_model=None)
    frame = replayed.frame
    assert set(frame["surface"]) == set(SURFACES)
    assert np.all((frame["pscore"] > 0) & (frame["pscore"] <= 1))
    ips = (frame["reward"] * frame["target_pscore"] / frame["pscore"]).groupby(frame["surface"])
    assert np.all(np.isfinite(ips.sum().to_numpy())) and ips.sum()["title"] > 0
    with pytest.raises(ValueError, match="have no impressions"):
        fit_unified_and_specialists(
            data, catalog_from_world(world), config, surfaces=("billboard",)
        )
