"""The metrics operators watch agree with the log: decisions by policy and whether they explored,
the explored positions, the realized exploration parameters, the propensity distribution and the
write times; replays and refusals add nothing to them."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from api_keys import authorize
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from api.app import create_app
from api.settings import Settings
from explore import EpsilonGreedySlate
from fm_core import ItemCatalog, PopularityAffinityScorer
from proplog.engine import make_engine

DECISIONS = 40
K = 5
EPSILON = 0.5


def samples(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``/metrics``: (name, sorted labels) → value."""
    found = {}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def total(found: dict, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    return sum(
        value
        for (sample, have), value in found.items()
        if sample == name and set(labels.items()) <= set(have)
    )


@pytest.fixture
def served(tmp_path: Path, small_catalog: ItemCatalog) -> Iterator[tuple[TestClient, str]]:
    url = f"sqlite:///{tmp_path / 'api.db'}"
    app = create_app(
        Settings(database_url=url, max_k=20, reload_seconds=0),
        scorer=PopularityAffinityScorer(small_catalog, model_version="test-model"),
        policy=EpsilonGreedySlate(epsilon=EPSILON, pool=30),
    )
    with TestClient(app) as client:
        authorize(client)
        yield client, url


def test_decision_metrics_agree_with_the_log(served: tuple[TestClient, str]) -> None:
    client, url = served
    ids = [str(uuid.uuid4()) for _ in range(DECISIONS)]
    for i, decision_id in enumerate(ids):
        body = {"user_id": f"u{i % 7}", "surface": "home", "k": K, "decision_id": decision_id}
        assert client.post("/v1/decisions", json=body).status_code == 201
    replay = {"user_id": "u0", "surface": "home", "k": K, "decision_id": ids[0]}
    assert client.post("/v1/decisions", json=replay).status_code == 200  # counts nothing
    assert client.post("/v1/decisions", json={**replay, "k": 0}).status_code == 422
    played = client.post(
        "/v1/events",
        json={"event_id": "e1", "user_id": "u9", "item_id": 3, "kind": "play", "source": "search"},
    )
    assert played.status_code == 201

    engine = make_engine(url)
    with engine.connect() as conn:
        explored_decisions = conn.execute(
            text("SELECT COUNT(DISTINCT decision_id) FROM slate_item WHERE explored")
        ).scalar_one()
        explored_positions, positions, propensity_sum = conn.execute(
            text(
                "SELECT SUM(CASE WHEN explored THEN 1 ELSE 0 END), COUNT(*), "
                "SUM(COALESCE(propensity, cond_propensity)) FROM slate_item"
            )
        ).one()
    engine.dispose()

    found = samples(client)
    made = "loopbreak_decisions_made_total"
    assert total(found, made, policy="epsilon_greedy") == DECISIONS
    assert total(found, made, policy="epsilon_greedy", explored="true") == explored_decisions
    assert 0 < explored_decisions < DECISIONS  # ε = 0.5 over 5 positions: both kinds occur
    assert total(found, "loopbreak_explored_positions_total") == explored_positions
    epsilon = {"policy": "epsilon_greedy", "parameter": "epsilon"}
    assert total(found, "loopbreak_exploration_parameter_count", **epsilon) == DECISIONS
    assert total(found, "loopbreak_exploration_parameter_sum", **epsilon) == pytest.approx(
        DECISIONS * EPSILON
    )
    assert total(found, "loopbreak_propensity_count") == positions == DECISIONS * K
    assert total(found, "loopbreak_propensity_sum") == pytest.approx(propensity_sum)
    assert total(found, "loopbreak_log_write_seconds_count", kind="decision") == DECISIONS
    assert total(found, "loopbreak_log_write_seconds_count", kind="event") == 1
    assert total(found, "loopbreak_log_write_seconds_sum", kind="decision") > 0
