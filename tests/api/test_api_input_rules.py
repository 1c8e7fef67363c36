"""The HTTP API's input rules on both back ends: identical event retries that race are replays
(never a 409) when the server stamps their time, times outside the log's range and NUL
characters get a 422 naming the field, and nothing is written for a refused request."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from api_keys import authorize
from fastapi.testclient import TestClient
from store_inputs import rows_at

from api.app import create_app
from api.settings import Settings
from fm_core import ItemCatalog, PopularityAffinityScorer

RACERS = 8
ROUNDS = 6


@pytest.fixture(params=[True, False], ids=["group-commit", "direct"])
def settings(request: pytest.FixtureRequest, log_url: str) -> Settings:
    return Settings(database_url=log_url, max_k=20, group_commit=request.param)


@pytest.fixture
def app_client(settings: Settings, small_catalog: ItemCatalog) -> Iterator[TestClient]:
    scorer = PopularityAffinityScorer(small_catalog, model_version="test-model")
    with TestClient(create_app(settings, scorer=scorer)) as test_client:
        authorize(test_client)
        yield test_client


def decision_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "user_id": "u1",
        "surface": "search",
        "context": {
            "device": "tv",
            "country": "US",
            "local_time": "2026-11-22T20:15:00-05:00",
            "query": "space",
            "source_item": 3,
        },
        "decision_id": str(uuid.uuid4()),
        "k": 3,
    }
    body.update(overrides)
    return body


def event_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "event_id": "e-1",
        "user_id": "u1",
        "item_id": 4,
        "kind": "play",
        "value": 30.0,
        "source": "direct",
    }
    body.update(overrides)
    return body


def post_at_once(client: TestClient, path: str, bodies: list[dict[str, Any]]) -> list[int]:
    """POST every body from its own thread, released together; the status codes in order."""
    start = threading.Barrier(len(bodies))
    codes: list[int] = [0] * len(bodies)

    def post(i: int) -> None:
        start.wait()
        codes[i] = client.post(path, json=bodies[i]).status_code

    threads = [threading.Thread(target=post, args=(i,)) for i in range(len(bodies))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return codes


# ---------------------------------------------------------------------------------------------
# 1. Racing identical retries without created_at
# ---------------------------------------------------------------------------------------------


def test_racing_identical_events_without_created_at_are_replays_not_conflicts(
    app_client: TestClient, settings: Settings
) -> None:
    for round_ in range(ROUNDS):
        body = event_body(event_id=f"race-{round_}")
        codes = post_at_once(app_client, "/v1/events", [body] * RACERS)
        assert 409 not in codes, codes
        assert sorted(codes) == [200] * (RACERS - 1) + [201], codes
    assert rows_at(settings.database_url, "event") == ROUNDS

    # A retry with other content is still a conflict, naming the field.
    changed = app_client.post("/v1/events", json=event_body(event_id="race-0", item_id=5))
    assert changed.status_code == 409, changed.text
    assert "item_id" in changed.json()["message"]
    # And so is one whose client time differs from the stored one.
    timed = app_client.post(
        "/v1/events", json=event_body(event_id="race-0", created_at="2026-01-01T00:00:00Z")
    )
    assert timed.status_code == 409, timed.text
    assert "created_at" in timed.json()["message"]
    assert rows_at(settings.database_url, "event") == ROUNDS


def test_racing_identical_decision_retries_are_replays_not_conflicts(
    app_client: TestClient, settings: Settings
) -> None:
    """A client that retries a decision (same decision_id, same request) from several threads
    at once gets one 201 and replays of the same slate, never a 409; one decision is logged."""
    for _ in range(ROUNDS):
        body = decision_body(decision_id=str(uuid.uuid4()), deferred=True)
        codes = post_at_once(app_client, "/v1/decisions", [body] * RACERS)
        assert 409 not in codes, codes
        assert sorted(codes) == [200] * (RACERS - 1) + [201], codes
        answers = {
            tuple(p["item_id"] for p in app_client.post("/v1/decisions", json=body).json()["slate"])
            for _ in range(2)
        }
        assert len(answers) == 1
    assert rows_at(settings.database_url, "decision") == ROUNDS
    assert rows_at(settings.database_url, "decision_activation") == ROUNDS


def test_racing_events_with_different_content_still_conflict(
    app_client: TestClient, settings: Settings
) -> None:
    bodies = [event_body(event_id="mixed", item_id=4 + i % 2) for i in range(RACERS)]
    codes = post_at_once(app_client, "/v1/events", bodies)
    assert codes.count(201) == 1, codes
    assert 409 in codes, codes
    assert set(codes) <= {200, 201, 409}, codes
    assert rows_at(settings.database_url, "event") == 1


# ---------------------------------------------------------------------------------------------
# 2. Times outside the log's range
# ---------------------------------------------------------------------------------------------

EXTREME_TIMES = [
    "0001-01-01T00:00:00+01:00",  # before datetime.min once in UTC: OverflowError
    "9999-12-31T23:59:59-01:00",  # after datetime.max once in UTC: OverflowError
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59Z",
    "1969-12-31T23:59:59Z",
    "1970-01-01T00:30:00+01:00",  # 1969-12-31T23:30Z
    "2262-01-01T00:00:00Z",
    "2261-12-31T23:30:00-01:00",  # 2262-01-01T00:30Z
]


@pytest.mark.parametrize("when", EXTREME_TIMES)
def test_event_times_outside_the_range_get_422_naming_created_at(
    app_client: TestClient, settings: Settings, when: str
) -> None:
    response = app_client.post("/v1/events", json=event_body(created_at=when))
    assert response.status_code == 422, response.text
    message = response.json()["message"]
    assert message.startswith("created_at:"), message
    assert "1970-01-01" in message and "2262-01-01" in message, message
    assert rows_at(settings.database_url, "event") == 0


@pytest.mark.parametrize("when", EXTREME_TIMES)
def test_decision_local_times_outside_the_range_get_422_naming_local_time(
    app_client: TestClient, settings: Settings, when: str
) -> None:
    body = decision_body()
    body["context"]["local_time"] = when
    response = app_client.post("/v1/decisions", json=body)
    assert response.status_code == 422, response.text
    message = response.json()["message"]
    assert message.startswith("context.local_time:"), message
    assert "1970-01-01" in message and "2262-01-01" in message, message
    assert rows_at(settings.database_url, "decision") == 0


@pytest.mark.parametrize(
    "when", ["1970-01-01T00:00:00Z", "1970-01-01T01:00:00+01:00", "2261-12-31T23:59:59Z"]
)
def test_times_at_the_edges_of_the_range_are_taken(
    app_client: TestClient, settings: Settings, when: str
) -> None:
    assert app_client.post("/v1/events", json=event_body(created_at=when)).status_code == 201
    body = decision_body()
    body["context"]["local_time"] = when
    assert app_client.post("/v1/decisions", json=body).status_code == 201
    assert rows_at(settings.database_url, "event") == 1


# ---------------------------------------------------------------------------------------------
# 3. NUL characters
# ---------------------------------------------------------------------------------------------

NUL = "\u0000"
DECISION_STRINGS: list[tuple[str, Any]] = [
    ("user_id", lambda b: b.update(user_id="u" + NUL)),
    ("surface", lambda b: b.update(surface="home" + NUL)),
    ("decision_id", lambda b: b.update(decision_id=b["decision_id"] + NUL)),
    ("context.device", lambda b: b["context"].update(device="t" + NUL + "v")),
    ("context.country", lambda b: b["context"].update(country="U" + NUL)),
    ("context.local_time", lambda b: b["context"].update(local_time=NUL + "2026-11-22T20:15Z")),
    ("context.query", lambda b: b["context"].update(query="spa" + NUL + "ce")),
]
EVENT_STRINGS = [
    "event_id", "user_id", "kind", "source", "decision_id",
]  # fmt: skip


@pytest.mark.parametrize(
    ("field", "mutate"), DECISION_STRINGS, ids=[field for field, _ in DECISION_STRINGS]
)
def test_nul_in_a_decision_string_gets_422_naming_it(
    app_client: TestClient, settings: Settings, field: str, mutate: Any
) -> None:
    body = decision_body()
    mutate(body)
    response = app_client.post("/v1/decisions", json=body)
    assert response.status_code == 422, response.text
    message = response.json()["message"]
    assert message.startswith(f"{field}:"), message
    assert "NUL" in message, message
    assert rows_at(settings.database_url, "decision") == 0


@pytest.mark.parametrize("field", EVENT_STRINGS)
def test_nul_in_an_event_string_gets_422_naming_it(
    app_client: TestClient, settings: Settings, field: str
) -> None:
    body = event_body(decision_id=str(uuid.uuid4()))
    body[field] = body[field] + NUL
    response = app_client.post("/v1/events", json=body)
    assert response.status_code == 422, response.text
    message = response.json()["message"]
    assert message.startswith(f"{field}:"), message
    assert "NUL" in message, message
    assert rows_at(settings.database_url, "event") == 0


def test_nul_in_created_at_gets_422_naming_it(app_client: TestClient, settings: Settings) -> None:
    body = event_body(created_at="2026-01-01T00:00:00Z" + NUL)
    response = app_client.post("/v1/events", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["message"].startswith("created_at:")
    assert rows_at(settings.database_url, "event") == 0


NOT_STRINGS = {
    "k",
    "candidates",
    "context",
    "source_item",
    "item_id",
    "value",
    "position",
    "deferred",
}
"""Fields that a string never fills (numbers, lists, the context object)."""


def test_the_tables_cover_every_field_a_string_fills() -> None:
    """A new field of a request must join a NUL table above (the schemas' shared validator checks
    every field; this keeps the tables honest about it)."""
    from api.schemas import DecisionRequest, EventRequest, RequestContext

    decision = set(DecisionRequest.model_fields) | {
        f"context.{name}" for name in RequestContext.model_fields
    }
    assert decision - NOT_STRINGS - {"context.source_item"} == {
        field for field, _ in DECISION_STRINGS
    }
    assert set(EventRequest.model_fields) - NOT_STRINGS == {*EVENT_STRINGS, "created_at"}
