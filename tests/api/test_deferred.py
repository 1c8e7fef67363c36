"""Deferred decisions over HTTP: ``"deferred": true`` logs a slate that counts as shown (for OPE,
training and exports, through ``proplog.frames``) only once ``POST
/v1/decisions/{decision_id}/activate`` is called before its ``activation_expires_at``."""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from api_keys import authorize
from fastapi.testclient import TestClient
from store_inputs import rows_at

from api.app import create_app
from api.settings import Settings
from fm_core import ItemCatalog, PopularityAffinityScorer
from proplog.frames import decision_frame, slate_frame


def decision_body(**overrides: Any) -> dict[str, Any]:
    return {"user_id": "u1", "surface": "home", "k": 3, **overrides}


def shown_ids(client: TestClient) -> set[str]:
    engine = client.app.state.engine  # type: ignore[attr-defined]
    return set(slate_frame(session_or_engine=engine)["decision_id"])


def activate(client: TestClient, decision_id: str, **kwargs: Any) -> Any:
    return client.post(f"/v1/decisions/{decision_id}/activate", **kwargs)


def error_field(response: Any) -> str:
    body = response.json()
    return body["detail"][0]["field"] if "detail" in body else body["field"]


def defer(client: TestClient, **overrides: Any) -> dict[str, Any]:
    response = client.post("/v1/decisions", json=decision_body(deferred=True, **overrides))
    assert response.status_code == 201, response.text
    return response.json()


def outcomes(client: TestClient) -> dict[str, float]:
    found: dict[str, float] = {}
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("loopbreak_activations_total{"):
            label, value = line.split("} ")
            found[label.split('"')[1]] = float(value)
    return found


def test_a_deferred_decision_counts_as_shown_only_once_activated(client: TestClient) -> None:
    body = defer(client)
    key = body["decision_id"]
    assert body["deferred"] is True
    created = datetime.fromisoformat(body["created_at"])
    expires = datetime.fromisoformat(body["activation_expires_at"])
    assert expires.tzinfo is not None and expires - created == timedelta(hours=1)
    assert key not in shown_ids(client)  # logged, but not shown: no OPE, no training
    engine = client.app.state.engine  # type: ignore[attr-defined]
    assert key in set(slate_frame(session_or_engine=engine, shown_only=False)["decision_id"])

    response = activate(client, key)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["decision_id"], answer["activated"], answer["replayed"]) == (key, True, False)
    activated_at = datetime.fromisoformat(answer["activated_at"])
    assert created <= activated_at < expires
    assert key in shown_ids(client)
    assert key in set(decision_frame(session_or_engine=engine)["decision_id"])


def test_a_decision_that_is_not_deferred_says_so_and_is_shown_at_once(client: TestClient) -> None:
    response = client.post("/v1/decisions", json=decision_body())
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["deferred"], body["activation_expires_at"]) == (False, None)
    assert body["decision_id"] in shown_ids(client)
    refused = activate(client, body["decision_id"])
    assert refused.status_code == 409, refused.text
    assert error_field(refused) == "decision_id"
    assert "was not deferred; it counted as shown when it was made" in refused.text
    assert outcomes(client) == {"not_deferred": 1.0}


def test_activating_twice_answers_the_first_activation(client: TestClient) -> None:
    key = defer(client)["decision_id"]
    first = activate(client, key)
    second = activate(client, key, json={})  # an empty JSON object is an empty body too
    assert (first.status_code, second.status_code) == (200, 200), second.text
    assert second.json() == {**first.json(), "replayed": True}
    assert outcomes(client) == {"activated": 1.0, "replayed": 1.0}


def test_an_activation_after_its_deadline_is_refused_and_never_shown(
    client: TestClient,
) -> None:
    client.app.state.settings.activation_seconds = 0.05  # type: ignore[attr-defined]
    body = defer(client)
    assert datetime.fromisoformat(body["activation_expires_at"]) - datetime.fromisoformat(
        body["created_at"]
    ) == timedelta(milliseconds=50)
    time.sleep(0.1)
    refused = activate(client, body["decision_id"])
    assert refused.status_code == 409, refused.text
    assert error_field(refused) == "decision_id"
    assert "expired at" in refused.text
    assert body["decision_id"] not in shown_ids(client)
    assert outcomes(client) == {"expired": 1.0}


def test_unknown_malformed_and_non_empty_activations_are_refused(client: TestClient) -> None:
    unknown = activate(client, str(uuid.uuid4()))
    assert unknown.status_code == 404, unknown.text
    assert error_field(unknown) == "decision_id"
    malformed = activate(client, "not-a-uuid")
    assert malformed.status_code == 422, malformed.text
    assert "decision_id" in error_field(malformed)
    key = defer(client)["decision_id"]
    with_fields = activate(client, key, json={"activated": True})
    assert with_fields.status_code == 422, with_fields.text
    assert key not in shown_ids(client)


def test_deferred_must_be_a_json_boolean(client: TestClient) -> None:
    for value in ("true", 1, None):
        response = client.post("/v1/decisions", json=decision_body(deferred=value))
        assert response.status_code == 422, response.text
        assert error_field(response) == "deferred"


def test_a_replay_answers_the_same_deferred_state_and_one_differing_in_it_is_a_409(
    client: TestClient,
) -> None:
    key = str(uuid.uuid4())
    first = defer(client, decision_id=key)
    again = client.post("/v1/decisions", json=decision_body(deferred=True, decision_id=key))
    assert again.status_code == 200, again.text
    assert again.json() == {**first, "replayed": True}
    undeferred = client.post("/v1/decisions", json=decision_body(decision_id=key))
    assert undeferred.status_code == 409, undeferred.text
    assert error_field(undeferred) == "deferred"

    plain = str(uuid.uuid4())
    assert client.post("/v1/decisions", json=decision_body(decision_id=plain)).status_code == 201
    deferred_now = client.post(
        "/v1/decisions", json=decision_body(deferred=True, decision_id=plain)
    )
    assert deferred_now.status_code == 409, deferred_now.text
    assert error_field(deferred_now) == "deferred"


def test_an_event_from_a_deferred_slate_is_refused_until_activated(client: TestClient) -> None:
    body = defer(client)
    play = {
        "event_id": "e1",
        "user_id": "u1",
        "item_id": body["slate"][0]["item_id"],
        "kind": "play",
        "source": "rec",
        "decision_id": body["decision_id"],
        "position": 0,
    }
    refused = client.post("/v1/events", json=play)
    assert refused.status_code == 409, refused.text
    assert error_field(refused) == "decision_id"
    assert "deferred and not activated" in refused.text
    search = {**play, "event_id": "e2", "source": "search", "decision_id": None, "position": None}
    assert client.post("/v1/events", json=search).status_code == 201
    assert activate(client, body["decision_id"]).status_code == 200
    accepted = client.post("/v1/events", json=play)
    assert accepted.status_code == 201, accepted.text
    engine = client.app.state.engine  # type: ignore[attr-defined]
    slates = slate_frame(session_or_engine=engine)
    assert slates.loc[slates["position"] == 0, "played"].tolist() == [1]


@pytest.mark.parametrize("group_commit", [True, False], ids=["group_commit", "direct"])
def test_the_activation_row_is_durable_with_the_decision_on_both_write_paths(
    tmp_path: Path, small_catalog: ItemCatalog, group_commit: bool
) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'log.db'}", group_commit=group_commit)
    scorer = PopularityAffinityScorer(small_catalog, model_version="m")
    with TestClient(create_app(settings, scorer=scorer)) as client:
        authorize(client)
        writer = client.app.state.writer  # type: ignore[attr-defined]
        assert (writer is not None) == group_commit
        key = defer(client)["decision_id"]
        # A separate connection sees both rows as soon as the 201 is answered.
        assert rows_at(settings.database_url, "decision_activation") == 1
        assert rows_at(settings.database_url, "decision") == 1
        assert key not in shown_ids(client)
        assert activate(client, key).status_code == 200
        assert key in shown_ids(client)


def test_activation_needs_the_decide_scope(client: TestClient) -> None:
    key = defer(client)["decision_id"]
    authorize(client, scopes=("events",))
    refused = activate(client, key)
    assert refused.status_code == 403, refused.text
    assert key not in shown_ids(client)
