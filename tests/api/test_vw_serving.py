"""The Vowpal Wabbit policy served over HTTP (``LOOPBREAK_POLICY=vowpal_wabbit``): decisions log
exact sequential propensities that replay bit for bit, and the policy learns from the decisions
and plays it receives (loop/online_learning.py), each decision once."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from api_keys import bearer, new_token
from fastapi.testclient import TestClient
from sqlmodel import Session

from api.app import create_app
from api.settings import Settings
from explore.vw_format import ActionFeatures, RequestContext
from explore.vw_policy import VowpalWabbitSlate
from fm_core import ItemCatalog, PopularityAffinityScorer
from loop.online_learning import OnlineLearner
from proplog.engine import make_engine
from proplog.store import get_decision


def vw_settings(tmp_path: Path, **changes: object) -> Settings:
    fields: dict[str, object] = {
        "database_url": f"sqlite:///{tmp_path / 'vw.db'}",
        "max_k": 20,
        "policy": "vowpal_wabbit",
        "vw_exploration": "epsilon",
        "epsilon": 0.2,
        "vw_reward_wait_seconds": 0.0,
    }
    return Settings(**{**fields, **changes})


@pytest.fixture
def vw_client(tmp_path: Path, small_catalog: ItemCatalog) -> Iterator[TestClient]:
    """The app serving the VW policy; its learner polls only when a test asks it to."""
    settings = vw_settings(tmp_path, vw_learn_seconds=3600.0, vw_learn_all_positions=True)
    scorer = PopularityAffinityScorer(small_catalog, model_version="test-model")
    app = create_app(settings, scorer=scorer)
    with TestClient(app, headers=bearer(new_token(settings.database_url))) as client:
        yield client


def decide(client: TestClient, user: str, k: int = 3) -> dict:
    response = client.post("/v1/decisions", json={"user_id": user, "surface": "home", "k": k})
    assert response.status_code == 201, response.text
    return response.json()


def play(client: TestClient, decision: dict, user: str, position: int) -> None:
    item = decision["slate"][position]["item_id"]
    body = {
        "event_id": str(uuid.uuid4()),
        "user_id": user,
        "item_id": item,
        "kind": "play",
        "source": "rec",
        "decision_id": decision["decision_id"],
        "position": position,
    }
    response = client.post("/v1/events", json=body)
    assert response.status_code == 201, response.text


def test_vw_decisions_log_exact_propensities_that_replay(vw_client: TestClient) -> None:
    policy = vw_client.app.state.service.policy
    assert isinstance(policy, VowpalWabbitSlate)
    decisions = [decide(vw_client, f"u{i}") for i in range(5)]
    engine = vw_client.app.state.engine
    with Session(engine) as session:
        for answer in decisions:
            stored = get_decision(session=session, decision_id=answer["decision_id"])
            assert stored is not None and stored.policy_name == "vowpal_wabbit"
            assert stored.exploration["updates"] == 0 and stored.marginals_exact is False
            index = {item: i for i, item in enumerate(stored.candidate_ids)}
            chosen = np.array([index[p.item_id] for p in stored.slate])
            actions = ActionFeatures(scores=np.asarray(stored.candidate_scores))
            replayed = policy.slate_probability_with(RequestContext(), actions, chosen)
            assert replayed == stored.slate[-1].prefix_propensity  # exact, not approximately
            assert all(p.propensity is None for p in stored.slate)  # K > 1: no exact marginal


def test_the_served_vw_policy_learns_each_decision_once_from_its_plays(
    vw_client: TestClient,
) -> None:
    app = vw_client.app
    learner: OnlineLearner = app.state.learner
    policy: VowpalWabbitSlate = app.state.service.policy
    decisions = [decide(vw_client, f"u{i}") for i in range(6)]
    for i, answer in enumerate(decisions[:3]):
        play(vw_client, answer, f"u{i}", position=1)
    assert learner.poll_once() == 6
    assert policy.updates_ == 6 * 3 == learner.examples_learned  # every position of each
    assert learner.poll_once() == 0 and policy.updates_ == 18  # the watermark: never twice
    later = decide(vw_client, "u9")
    engine = app.state.engine
    with Session(engine) as session:
        stored = get_decision(session=session, decision_id=later["decision_id"])
    assert stored is not None and stored.exploration["updates"] == 18  # the model state logged
    assert learner.poll_once() == 1 and policy.updates_ == 21


def test_the_learner_runs_in_the_background_of_the_app(
    tmp_path: Path, small_catalog: ItemCatalog
) -> None:
    settings = vw_settings(tmp_path, vw_learn_seconds=0.05)
    scorer = PopularityAffinityScorer(small_catalog, model_version="test-model")
    app = create_app(settings, scorer=scorer)
    with TestClient(app, headers=bearer(new_token(settings.database_url))) as client:
        play(client, decide(client, "u1", k=2), "u1", position=0)
        deadline = time.monotonic() + 20.0
        while app.state.learner.decisions_learned < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert app.state.learner.decisions_learned == 1
        assert app.state.service.policy.updates_ == 1  # position 0 only, by default
    assert app.state.learner._thread is None  # stopped with the app


def test_a_deferred_decision_never_activated_is_not_learned(vw_client: TestClient) -> None:
    response = vw_client.post(
        "/v1/decisions", json={"user_id": "u1", "surface": "home", "k": 2, "deferred": True}
    )
    assert response.status_code == 201, response.text
    learner: OnlineLearner = vw_client.app.state.learner
    assert learner.poll_once() == 0 and learner.watermark is not None
    assert vw_client.app.state.service.policy.updates_ == 0


def test_vw_settings_build_the_policy_and_refuse_a_budget(tmp_path: Path) -> None:
    policy = vw_settings(tmp_path, vw_exploration="bag", vw_bag=3).exploration_policy()
    assert isinstance(policy, VowpalWabbitSlate)
    assert policy.params()["exploration"] == "bag" and policy.params()["bag"] == 3
    assert vw_settings(tmp_path, vw_learn=False).online_learning() is None
    config = vw_settings(tmp_path, vw_learn_share=0.25, vw_reward_wait_seconds=5).online_learning()
    assert config is not None and config.learn_share == 0.25 and not config.all_positions
    assert config.reward_wait_seconds == 5.0
    assert Settings().online_learning() is None
    with pytest.raises(ValueError, match="exploration_budget"):
        vw_settings(tmp_path, exploration_budget=0.01).exploration_policy()


def test_a_policy_loaded_from_a_model_file_learns_only_what_comes_after_it(
    tmp_path: Path, small_catalog: ItemCatalog
) -> None:
    saved = VowpalWabbitSlate(exploration="epsilon")
    saved.decide(np.array([0.2, 0.1]), 1, np.random.default_rng(0))  # opens the workspace
    model = saved.save(tmp_path / "vw.model")
    saved.close()
    settings = vw_settings(tmp_path, vw_learn_seconds=3600.0, vw_model_path=model)
    scorer = PopularityAffinityScorer(small_catalog, model_version="test-model")
    engine = make_engine(settings.database_url)
    app = create_app(settings, scorer=scorer, engine=engine)
    with TestClient(app, headers=bearer(new_token(settings.database_url))) as client:
        decide(client, "u1", k=2)
        assert app.state.learner.poll_once() == 1
    engine.dispose()
