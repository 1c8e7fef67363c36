"""The service's settings: the exploration policy and the A/B experiment that ``Settings``
chooses, and the calibrated exploration that a decision through the HTTP API records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from api_keys import authorize
from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import Settings
from explore import CalibratedSlate, EpsilonGreedySlate, ExplorationBudget, PlackettLuceSlate
from fm_core import ItemCatalog, PopularityAffinityScorer


def test_settings_choose_the_serving_policy() -> None:
    assert Settings().exploration_policy() == EpsilonGreedySlate(epsilon=0.1, pool=30)
    chosen = Settings(
        policy="plackett_luce", temperature=0.2, exploration_budget=0.005, propensity_floor=1e-4
    ).exploration_policy()
    assert isinstance(chosen, CalibratedSlate)
    assert chosen.base == PlackettLuceSlate(temperature=0.2, pool=30)
    assert chosen.budget.relative_cost == 0.005 and chosen.budget.floor == 1e-4
    with pytest.raises(ValueError, match="policy"):
        Settings(policy="softmax")  # type: ignore[arg-type]


def test_the_service_logs_the_calibrated_exploration(
    tmp_path: Path, small_catalog: ItemCatalog
) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'cal.db'}", max_k=20)
    scorer = PopularityAffinityScorer(small_catalog, model_version="m")
    policy = CalibratedSlate(
        base=EpsilonGreedySlate(pool=50), budget=ExplorationBudget(relative_cost=0.01)
    )
    with TestClient(create_app(settings, scorer=scorer, policy=policy)) as client:
        authorize(client)
        body = {"user_id": "u1", "surface": "home", "k": 10}
        response = client.post("/v1/decisions", json=body)
    assert response.status_code == 201, response.text
    params = response.json()["policy"]["params"]
    assert params["policy"] == "epsilon_greedy" and params["budget"] == 0.01
    assert params["expected_cost"] <= 0.01 + 1e-12 and "epsilon" in params


def test_settings_read_the_experiment_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Settings().experiment is None  # the default serves everyone alike
    arms = [{"name": "control", "share": 0.5, "model_path": "a.npz"},
            {"name": "new", "share": 0.5, "model_path": "b.npz", "epsilon": 0.2}]  # fmt: skip
    monkeypatch.setenv("LOOPBREAK_EXPERIMENT", json.dumps({"name": "t1", "arms": arms}))
    experiment = Settings().experiment
    assert experiment is not None and experiment.arms[1].epsilon == 0.2
    assert experiment.control.name == "control"
