"""The baseline scorer serves from per-item terms computed once per fitted state: its scores must
equal the model's definition, σ(features · coef), on every kind of request, and follow a refit or
a reload rather than keep the old state's terms."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from sim_logs import UniformLogging, impressions

from fm_core import PopularityAffinityScorer, ScoreRequest
from fm_core.baseline import FEATURES
from fm_core.logistic import predict_logistic
from loop.sim_bridge import catalog_from_world
from sim import World, WorldConfig


def _definition(scorer: PopularityAffinityScorer, request: ScoreRequest, items: np.ndarray):
    return predict_logistic(scorer.features(request, items), scorer.coef_)


@pytest.fixture(scope="module")
def fitted() -> tuple[PopularityAffinityScorer, World, list[ScoreRequest]]:
    world = World(WorldConfig(seed=5, n_items=60, n_users=40))
    sim = UniformLogging(world, seed=2)
    scorer = PopularityAffinityScorer(catalog_from_world(world))
    scorer.fit(impressions(sim.run(0.0, 8.0, 1500)), model_version="serving-test")
    later = sim.run(8.0, 10.0, 200).score_requests
    return scorer, world, later


def test_served_scores_equal_the_models_definition(fitted) -> None:
    scorer, world, requests = fitted
    with_history = [r for r in requests if r.history.plays().size]
    assert len(with_history) >= 20  # the affinity and seen terms are exercised
    assert scorer.devices_  # the device term too
    unknown_device = dataclasses.replace(requests[0], device="a device never seen")
    for request in [*requests[:60], unknown_device]:
        items = world.available(request.time / 86400.0)
        served = scorer.score([request], [items])[0]
        np.testing.assert_allclose(served, _definition(scorer, request, items), rtol=1e-12)
        subset = items[::-7]  # any candidates, in any order
        np.testing.assert_allclose(
            scorer.score([request], [subset])[0], _definition(scorer, request, subset), rtol=1e-12
        )


def test_served_scores_follow_a_refit_and_a_reload(fitted, tmp_path: Path) -> None:
    scorer, world, requests = fitted
    request = next(r for r in requests if r.history.plays().size)
    items = world.available(request.time / 86400.0)
    before = scorer.score([request], [items])[0]
    refit = PopularityAffinityScorer(scorer.catalog)
    refit.score([request], [items])  # the unfitted state's terms are built, then replaced
    refit.fit(impressions(UniformLogging(world, seed=9).run(0.0, 4.0, 800)))
    after = refit.score([request], [items])[0]
    np.testing.assert_allclose(after, _definition(refit, request, items), rtol=1e-12)
    assert not np.allclose(after, before)
    loaded = PopularityAffinityScorer.load(scorer.save(tmp_path / "model.npz"))
    np.testing.assert_allclose(loaded.score([request], [items])[0], before, rtol=1e-12)
    loaded.coef_[FEATURES.index("log_popularity")] *= -1.0  # changed in place, after serving
    np.testing.assert_allclose(
        loaded.score([request], [items])[0], _definition(loaded, request, items), rtol=1e-12
    )
