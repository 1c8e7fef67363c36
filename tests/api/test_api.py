"""The HTTP API: decisions are recorded before they are answered, retries are idempotent, and
bad input gets a 422/404/409 that names the field, with nothing written."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from api_keys import authorize
from fastapi.testclient import TestClient
from sqlmodel import Session
from store_inputs import rows_at

from api.app import create_app
from api.settings import Settings
from fm_core import ItemCatalog, PopularityAffinityScorer
from fm_core.baseline import FEATURES
from proplog.engine import make_engine
from proplog.store import get_decision


def decision_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "user_id": "u1",
        "surface": "home",
        "context": {
            "device": "tv",
            "country": "US",
            "local_time": "2026-11-22T20:15:00-05:00",
        },
        "k": 5,
    }
    body.update(overrides)
    return body


def count(settings: Settings, table: str) -> int:
    return rows_at(settings.database_url, table)


def test_decision_is_on_disk_before_the_answer_and_matches_it(
    client: TestClient, api_settings: Settings
) -> None:
    response = client.post("/v1/decisions", json=decision_body())
    assert response.status_code == 201, response.text
    body = response.json()
    assert len(body["slate"]) == 5
    assert [p["position"] for p in body["slate"]] == [0, 1, 2, 3, 4]
    assert body["replayed"] is False
    assert uuid.UUID(body["decision_id"]).version == 7  # time-ordered keys (proplog.ids)
    assert body["model_version"] == "test-model"
    assert body["policy"]["params"]["epsilon"] == pytest.approx(0.1)
    # A separate engine (a new connection) sees the committed record, field for field.
    engine = make_engine(api_settings.database_url)
    with Session(engine) as session:
        stored = get_decision(session=session, decision_id=body["decision_id"])
    engine.dispose()
    assert stored is not None
    assert [s.item_id for s in stored.slate] == [p["item_id"] for p in body["slate"]]
    assert [s.propensity for s in stored.slate] == [p["propensity"] for p in body["slate"]]
    assert stored.device == "tv" and stored.country == "US"
    for position in body["slate"]:
        assert 0.0 < position["propensity"] <= 1.0
        assert 0.0 < position["prefix_propensity"] <= position["cond_propensity"] <= 1.0


def test_replayed_decision_id_returns_the_stored_decision_and_writes_nothing(
    client: TestClient, api_settings: Settings
) -> None:
    decision_id = str(uuid.uuid4())
    first = client.post("/v1/decisions", json=decision_body(decision_id=decision_id))
    again = client.post("/v1/decisions", json=decision_body(decision_id=decision_id))
    assert first.status_code == 201 and again.status_code == 200
    assert again.json()["replayed"] is True
    assert again.json()["slate"] == first.json()["slate"]
    assert count(api_settings, "decision") == 1
    assert count(api_settings, "slate_item") == 5


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"user_id": "someone-else"}, "user_id"),
        ({"surface": "search"}, "surface"),
        ({"context": {"device": "mobile", "country": "US",
                      "local_time": "2026-11-22T20:15:00-05:00"}}, "device"),
        ({"k": 3}, "k"),
        ({"candidates": [3, 5, 7, 11, 13, 17]}, "candidates"),
    ],
)  # fmt: skip
def test_a_replayed_decision_id_with_another_request_is_a_conflict_naming_the_field(
    client: TestClient, api_settings: Settings, change: dict[str, Any], field: str
) -> None:
    decision_id = str(uuid.uuid4())
    base = decision_body(decision_id=decision_id, candidates=[3, 5, 7, 11, 13, 19])
    assert client.post("/v1/decisions", json=base).status_code == 201
    again = client.post("/v1/decisions", json={**base, **change})
    assert again.status_code == 409, again.text
    assert field in again.text and "slate" not in again.json()  # nothing of the stored decision
    assert client.post("/v1/decisions", json=base).status_code == 200  # the same one replays
    assert count(api_settings, "decision") == 1


def test_k_above_the_number_of_candidates_is_refused_naming_k_and_nothing_is_written(
    client: TestClient, api_settings: Settings
) -> None:
    body = decision_body(decision_id=str(uuid.uuid4()), candidates=[3, 5], k=5)
    refused = client.post("/v1/decisions", json=body)
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["field"] == "k"
    assert "number of candidates (2)" in refused.json()["message"]
    assert count(api_settings, "decision") == 0
    assert client.post("/v1/decisions", json={**body, "k": 2}).status_code == 201


def test_client_candidates_restrict_the_slate(client: TestClient) -> None:
    response = client.post("/v1/decisions", json=decision_body(candidates=[3, 5, 7, 11], k=3))
    assert response.status_code == 201, response.text
    assert {p["item_id"] for p in response.json()["slate"]} <= {3, 5, 7, 11}


def test_events_are_idempotent_on_event_id(client: TestClient, api_settings: Settings) -> None:
    decision = client.post("/v1/decisions", json=decision_body()).json()
    event = {
        "event_id": "e-1",
        "user_id": "u1",
        "item_id": decision["slate"][1]["item_id"],
        "kind": "play",
        "value": 1200.0,
        "source": "rec",
        "decision_id": decision["decision_id"],
        "position": 1,
    }
    first = client.post("/v1/events", json=event)
    again = client.post("/v1/events", json=event)
    assert first.status_code == 201 and first.json() == {"event_id": "e-1", "created": True}
    assert again.status_code == 200 and again.json() == {"event_id": "e-1", "created": False}
    changed = client.post("/v1/events", json={**event, "value": 5.0})
    assert changed.status_code == 409
    assert "value" in changed.json()["message"]
    assert count(api_settings, "event") == 1


def test_search_and_direct_events_need_no_decision(client: TestClient) -> None:
    for j, source in enumerate(("search", "direct")):
        response = client.post(
            "/v1/events",
            json={"event_id": f"s{j}", "user_id": "u2", "item_id": 4, "kind": "play",
                  "source": source, "value": 30},
        )  # fmt: skip
        assert response.status_code == 201, response.text


def test_history_feeds_the_next_decision(
    api_settings: Settings, small_catalog: ItemCatalog
) -> None:
    """A play recorded through the API is in the user's history at the next decision: with a
    scorer that marks seen items down, item 2's score drops once the user has played it."""
    scorer = PopularityAffinityScorer(small_catalog, model_version="seen-aware")
    scorer.coef_[FEATURES.index("seen")] = -3.0
    body = decision_body(user_id="u9", candidates=[2, 3], k=2)
    with TestClient(create_app(api_settings, scorer=scorer)) as client:
        authorize(client)
        before = {
            p["item_id"]: p["score"]
            for p in client.post("/v1/decisions", json=body).json()["slate"]
        }
        played = client.post(
            "/v1/events",
            json={"event_id": "h1", "user_id": "u9", "item_id": 2, "kind": "play",
                  "source": "direct", "created_at": "2026-01-01T00:00:00Z"},
        )  # fmt: skip
        assert played.status_code == 201
        after = {
            p["item_id"]: p["score"]
            for p in client.post("/v1/decisions", json=body).json()["slate"]
        }
    assert before[2] == pytest.approx(before[3])
    assert after[2] < after[3] / 5
    assert after[3] == pytest.approx(before[3])


BAD_DECISIONS: list[tuple[str, dict[str, Any], str]] = [
    ("missing user_id", {"user_id": None}, "user_id"),
    ("empty user_id", {"user_id": ""}, "user_id"),
    ("long user_id", {"user_id": "u" * 200}, "user_id"),
    ("unknown surface", {"surface": "homepage"}, "surface"),
    ("k zero", {"k": 0}, "k"),
    ("k above max_k", {"k": 21}, "k"),
    ("k not a number", {"k": "ten"}, "k"),
    ("decision_id not a uuid", {"decision_id": "abc"}, "decision_id"),
    ("naive local_time", {"context": {"local_time": "2026-11-22T20:00:00"}}, "local_time"),
    ("bad country", {"context": {"country": "usa"}}, "country"),
    ("unknown context field", {"context": {"devise": "tv"}}, "devise"),
    ("unknown top-level field", {"kk": 3}, "kk"),
    ("negative candidate", {"candidates": [1, -2]}, "candidates"),
    ("duplicate candidates", {"candidates": [1, 1]}, "candidates"),
    ("empty candidates", {"candidates": []}, "candidates"),
    ("unknown candidate item", {"candidates": [1, 999_999]}, "candidates"),
]


@pytest.mark.parametrize(
    ("case", "overrides", "field"), BAD_DECISIONS, ids=[c[0] for c in BAD_DECISIONS]
)
def test_bad_decision_requests_get_422_naming_the_field(
    client: TestClient, api_settings: Settings, case: str, overrides: dict[str, Any], field: str
) -> None:
    body = decision_body(**overrides)
    if overrides.get("user_id") is None and "user_id" in overrides:
        del body["user_id"]
    response = client.post("/v1/decisions", json=body)
    assert response.status_code == 422, response.text
    assert field in response.json()["message"] or field in str(response.json().get("detail"))
    assert count(api_settings, "decision") == 0


def test_malformed_json_gets_422(client: TestClient) -> None:
    response = client.post(
        "/v1/decisions", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422


def _event(**overrides: Any) -> dict[str, Any]:
    body = {"event_id": "e", "user_id": "u1", "item_id": 4, "kind": "play", "source": "direct"}
    body.update(overrides)
    return body


BAD_EVENTS: list[tuple[str, dict[str, Any], int, str]] = [
    ("unknown decision", {"source": "rec", "decision_id": str(uuid.uuid4()), "position": 0},
     404, "decision_id"),
    ("position without decision", {"position": 0}, 422, "position"),
    ("negative value", {"value": -1}, 422, "value"),
    ("unknown kind", {"kind": "watch"}, 422, "kind"),
    ("unknown source", {"source": "email"}, 422, "source"),
    ("missing event_id", {"event_id": None}, 422, "event_id"),
    ("negative item", {"item_id": -3}, 422, "item_id"),
    ("naive created_at", {"created_at": "2026-01-01T00:00:00"}, 422, "created_at"),
    ("decision_id not a uuid", {"decision_id": "nope"}, 422, "decision_id"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "overrides", "status", "field"), BAD_EVENTS, ids=[c[0] for c in BAD_EVENTS]
)
def test_bad_events_are_refused_naming_the_field(
    client: TestClient,
    api_settings: Settings,
    case: str,
    overrides: dict[str, Any],
    status: int,
    field: str,
) -> None:
    body = _event(**overrides)
    if "event_id" in overrides and overrides["event_id"] is None:
        del body["event_id"]
    response = client.post("/v1/events", json=body)
    assert response.status_code == status, response.text
    payload = response.json()
    assert field in payload["message"] or field in str(payload.get("detail"))
    assert count(api_settings, "event") == 0


def test_event_position_must_match_the_decisions_slate(
    client: TestClient, api_settings: Settings
) -> None:
    decision = client.post("/v1/decisions", json=decision_body()).json()
    wrong_item = {
        "event_id": "w1", "user_id": "u1", "item_id": decision["slate"][0]["item_id"],
        "kind": "play", "source": "rec", "decision_id": decision["decision_id"], "position": 3,
    }  # fmt: skip
    response = client.post("/v1/events", json=wrong_item)
    assert response.status_code == 422
    assert "item_id" in response.json()["message"] or "position" in response.json()["message"]
    assert count(api_settings, "event") == 0


def test_metrics_and_health(client: TestClient) -> None:
    client.post("/v1/decisions", json=decision_body())
    client.post("/v1/decisions", json=decision_body(k=0))
    metrics = client.get("/metrics").text
    assert 'loopbreak_decisions_total{replayed="false",surface="home"} 1.0' in metrics
    assert 'loopbreak_rejected_requests_total{status="422"} 1.0' in metrics
    assert client.get("/healthz").json()["model_version"] == "test-model"
