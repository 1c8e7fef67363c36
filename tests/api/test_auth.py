"""API keys on the HTTP service (``api.auth``): every bad credential is a 401 and every missing
scope a 403, in the service's error body naming ``authorization``, with nothing written; a
revocation takes effect within the cache time; no token reaches the logs; ``/healthz`` stays
open; the OpenAPI document declares the schemes and the refusals."""

from __future__ import annotations

import logging
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from api_keys import bearer
from fastapi.testclient import TestClient

import api.auth
from api.app import create_app
from api.settings import Settings
from fm_core import ItemCatalog, PopularityAffinityScorer
from proplog.api_keys import create_key, revoke_key

ROUTES = ("decide", "events", "metrics")


class Keys:
    """Keys made in the running app's log: their tokens by name."""

    def __init__(self, client: TestClient) -> None:
        engine = client.app.state.engine  # type: ignore[attr-defined]
        self.engine = engine
        self.ids: dict[str, str] = {}
        self.tokens: dict[str, str] = {}
        made = {
            "all": ["decide", "events", "admin"],
            "decide": ["decide"],
            "events": ["events"],
            "admin": ["admin"],
            "client": ["decide", "events"],
            "revoked": ["decide", "events"],
        }
        for name, scopes in made.items():
            record, token = create_key(engine, name, scopes)
            self.ids[name], self.tokens[name] = record.key_id, token
        revoke_key(engine, self.ids["revoked"])


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(database_url=f"sqlite:///{tmp_path / 'auth.db'}", max_k=20)


@pytest.fixture
def app_for(small_catalog: ItemCatalog) -> Callable[[Settings], TestClient]:
    scorer = PopularityAffinityScorer(small_catalog, model_version="test-model")
    return lambda settings: TestClient(create_app(settings, scorer=scorer))


@pytest.fixture
def bare(settings: Settings, app_for: Callable[[Settings], TestClient]) -> Iterator[TestClient]:
    """A client that sends no key unless told to."""
    with app_for(settings) as client:
        yield client


@pytest.fixture
def keys(bare: TestClient) -> Keys:
    return Keys(bare)


def decision_body() -> dict[str, Any]:
    return {"user_id": "u1", "surface": "home", "k": 3, "decision_id": str(uuid.uuid4())}


def event_body() -> dict[str, Any]:
    return {"event_id": str(uuid.uuid4()), "user_id": "u1", "item_id": 1, "kind": "play",
            "source": "direct", "value": 30}  # fmt: skip


def call(client: TestClient, route: str, headers: dict[str, str], query: str = "") -> Any:
    if route == "decide":
        return client.post(f"/v1/decisions{query}", json=decision_body(), headers=headers)
    if route == "events":
        return client.post(f"/v1/events{query}", json=event_body(), headers=headers)
    return client.get(f"/metrics{query}", headers=headers)


def rows(settings: Settings) -> tuple[int, int]:
    path = settings.database_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as db:
        decisions = db.execute("SELECT count(*) FROM decision").fetchone()[0]
        events = db.execute("SELECT count(*) FROM event").fetchone()[0]
    return int(decisions), int(events)


def assert_refused(response: Any, status: int, *tokens: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"message", "detail"}
    kind = "unauthorized" if status == 401 else "forbidden"
    assert body["detail"] == [{"field": "authorization", "message": body["message"], "type": kind}]
    assert response.headers["www-authenticate"].startswith("Bearer")
    if status == 401:
        assert response.headers["www-authenticate"] == "Bearer"
    for token in tokens:
        assert token not in response.text


BAD_CREDENTIALS: dict[str, Callable[[Keys], tuple[dict[str, str], str]]] = {
    "missing header": lambda k: ({}, ""),
    "empty bearer": lambda k: ({"Authorization": "Bearer "}, ""),
    "scheme alone": lambda k: ({"Authorization": "Bearer"}, ""),
    "another scheme": lambda k: ({"Authorization": f"Basic {k.tokens['all']}"}, ""),
    "token without scheme": lambda k: ({"Authorization": k.tokens["all"]}, ""),
    "malformed token": lambda k: (bearer("lb_not-a-token"), ""),
    "wrong secret for a real key id": lambda k: (
        bearer(f"lb_{k.ids['all']}_{k.tokens['decide'][-43:]}"), ""),
    "unknown key id": lambda k: (bearer(f"lb_{'0' * 12}_{k.tokens['all'][-43:]}"), ""),
    "revoked key": lambda k: (bearer(k.tokens["revoked"]), ""),
    "extra spaces after Bearer": lambda k: ({"Authorization": f"Bearer   {k.tokens['all']}"}, ""),
    "two tokens": lambda k: ({"Authorization": f"Bearer {k.tokens['all']} {k.tokens['all']}"}, ""),
    "token of 10 kB": lambda k: (bearer("lb_" + "a" * 10_000), ""),
    "real token padded to 10 kB": lambda k: (bearer(k.tokens["all"] + "A" * 10_000), ""),
    "empty X-API-Key": lambda k: ({"X-API-Key": ""}, ""),
    "X-API-Key with Bearer in it": lambda k: ({"X-API-Key": f"Bearer {k.tokens['all']}"}, ""),
    "key in the query string": lambda k: ({}, f"?api_key={k.tokens['all']}"),
    "key as access_token": lambda k: ({}, f"?access_token={k.tokens['all']}"),
}  # fmt: skip


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("case", list(BAD_CREDENTIALS))
def test_a_bad_credential_is_401_naming_authorization_and_writes_nothing(
    bare: TestClient, keys: Keys, settings: Settings, case: str, route: str
) -> None:
    headers, query = BAD_CREDENTIALS[case](keys)
    response = call(bare, route, headers, query)
    assert_refused(response, 401, *keys.tokens.values())
    assert rows(settings) == (0, 0)


@pytest.mark.parametrize(
    ("route", "key"),
    [("decide", "events"), ("events", "decide"), ("metrics", "decide"), ("metrics", "events"),
     ("metrics", "client")],
)  # fmt: skip
def test_a_key_without_the_scope_is_403_and_writes_nothing(
    bare: TestClient, keys: Keys, settings: Settings, route: str, key: str
) -> None:
    response = call(bare, route, bearer(keys.tokens[key]))
    assert_refused(response, 403, *keys.tokens.values())
    assert keys.ids[key] in response.json()["message"]
    assert response.headers["www-authenticate"].startswith('Bearer error="insufficient_scope"')
    assert rows(settings) == (0, 0)


@pytest.mark.parametrize(
    ("route", "key", "status"),
    [("decide", "decide", 201), ("decide", "client", 201), ("decide", "admin", 201),
     ("events", "events", 201), ("events", "client", 201), ("events", "admin", 201),
     ("metrics", "admin", 200)],
)  # fmt: skip
def test_a_key_with_the_scope_passes_and_admin_implies_every_scope(
    bare: TestClient, keys: Keys, route: str, key: str, status: int
) -> None:
    assert call(bare, route, bearer(keys.tokens[key])).status_code == status


def test_x_api_key_and_a_lower_case_scheme_are_accepted(bare: TestClient, keys: Keys) -> None:
    token = keys.tokens["client"]
    assert call(bare, "decide", {"X-API-Key": token}).status_code == 201
    assert call(bare, "decide", {"Authorization": f"bearer {token}"}).status_code == 201


def test_the_authorization_header_wins_over_x_api_key(bare: TestClient, keys: Keys) -> None:
    headers = {"Authorization": f"Bearer {keys.tokens['revoked']}", "X-API-Key": keys.tokens["all"]}
    assert_refused(call(bare, "decide", headers), 401)


def test_the_key_is_checked_before_the_body(bare: TestClient, settings: Settings) -> None:
    """A request without a key learns nothing about what its body would have needed."""
    response = bare.post("/v1/decisions", json={"user_id": "u1", "k": "many"})
    assert_refused(response, 401)


def test_healthz_is_open_and_masks_the_database_password(bare: TestClient) -> None:
    assert bare.get("/healthz").status_code == 200
    masked = Settings(database_url="postgresql+psycopg://u:s3cret@db/log").safe_database_url
    assert "s3cret" not in masked and "***" in masked


def test_refusals_are_counted(bare: TestClient, keys: Keys) -> None:
    for _ in range(3):
        call(bare, "decide", {})
    call(bare, "events", bearer(keys.tokens["decide"]))
    metrics = call(bare, "metrics", bearer(keys.tokens["admin"])).text
    assert 'loopbreak_rejected_requests_total{status="401"} 3.0' in metrics
    assert 'loopbreak_rejected_requests_total{status="403"} 1.0' in metrics


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_revocation_takes_effect_within_the_cache_time(
    settings: Settings, app_for: Callable[[Settings], TestClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    monkeypatch.setattr(api.auth.time, "monotonic", clock)
    with app_for(settings.model_copy(update={"key_cache_seconds": 5.0})) as client:
        record, token = create_key(client.app.state.engine, "client", ["decide"])  # type: ignore[attr-defined]
        assert call(client, "decide", bearer(token)).status_code == 201
        revoke_key(client.app.state.engine, record.key_id)  # type: ignore[attr-defined]
        clock.now += 4.9  # trusted from the cache, as documented
        assert call(client, "decide", bearer(token)).status_code == 201
        clock.now += 0.2  # past the cache time: the log is read again
        assert_refused(call(client, "decide", bearer(token)), 401, token)
        clock.now += 60.0
        assert_refused(call(client, "decide", bearer(token)), 401, token)


def test_with_no_cache_a_revocation_takes_effect_at_once(
    settings: Settings, app_for: Callable[[Settings], TestClient]
) -> None:
    with app_for(settings.model_copy(update={"key_cache_seconds": 0.0})) as client:
        engine = client.app.state.engine  # type: ignore[attr-defined]
        record, token = create_key(engine, "client", ["decide", "events"])
        assert call(client, "decide", bearer(token)).status_code == 201
        revoke_key(engine, record.key_id)
        assert_refused(call(client, "decide", bearer(token)), 401, token)
        assert_refused(call(client, "events", bearer(token)), 401, token)


def test_the_cache_holds_hashes_not_tokens(bare: TestClient, keys: Keys) -> None:
    assert call(bare, "decide", bearer(keys.tokens["client"])).status_code == 201
    cache = bare.app.state.key_cache  # type: ignore[attr-defined]
    held = repr(cache._entries)
    assert cache._entries and not any(token in held for token in keys.tokens.values())
    assert not any(token[-43:] in held for token in keys.tokens.values())


def test_no_token_reaches_the_logs(
    settings: Settings,
    app_for: Callable[[Settings], TestClient],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    with app_for(settings) as client:
        keys = Keys(client)
        for name in ("client", "revoked", "events"):
            call(client, "decide", bearer(keys.tokens[name]))
        call(client, "decide", bearer(f"lb_{keys.ids['all']}_{keys.tokens['decide'][-43:]}"))
        call(client, "decide", {"Authorization": f"Bearer  {keys.tokens['all']}"})
    assert "refused 401" in caplog.text and "refused 403" in caplog.text
    for token in keys.tokens.values():
        assert token not in caplog.text
        assert token[-43:] not in caplog.text


def test_a_service_without_a_live_key_warns_how_to_make_one(
    settings: Settings,
    app_for: Callable[[Settings], TestClient],
    caplog: pytest.LogCaptureFixture,
) -> None:
    with app_for(settings):
        pass
    assert "no live API key" in caplog.text and "loopbreak keys create" in caplog.text


def test_with_auth_off_no_key_is_needed_and_the_start_warns(
    settings: Settings,
    app_for: Callable[[Settings], TestClient],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LOOPBREAK_AUTH", "false")
    monkeypatch.setenv("LOOPBREAK_KEY_CACHE_SECONDS", "0")
    off = Settings(database_url=settings.database_url, max_k=20)
    assert off.auth is False and off.key_cache_seconds == 0.0
    with app_for(off) as client:
        assert call(client, "decide", {}).status_code == 201
        assert call(client, "events", {}).status_code == 201
        assert call(client, "metrics", {}).status_code == 200
    assert "API KEYS ARE OFF" in caplog.text
    monkeypatch.delenv("LOOPBREAK_AUTH")
    monkeypatch.delenv("LOOPBREAK_KEY_CACHE_SECONDS")
    assert Settings().auth is True and Settings().key_cache_seconds == 5.0


def test_the_openapi_document_declares_the_schemes_and_the_refusals(bare: TestClient) -> None:
    document = bare.get("/openapi.json").json()
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearer"] == {**schemes["bearer"], "type": "http", "scheme": "bearer"}
    assert schemes["apiKey"] == {**schemes["apiKey"], "type": "apiKey", "in": "header",
                                 "name": "X-API-Key"}  # fmt: skip
    for path, method in (("/v1/decisions", "post"), ("/v1/events", "post"), ("/metrics", "get")):
        operation = document["paths"][path][method]
        assert {"401", "403"} <= set(operation["responses"]), path
        assert {"bearer": []} in operation["security"] and {"apiKey": []} in operation["security"]
        body = operation["responses"]["401"]["content"]["application/json"]["schema"]
        assert body == {"$ref": "#/components/schemas/ErrorBody"}
    health = document["paths"]["/healthz"]["get"]
    assert "security" not in health and "401" not in health["responses"]


def test_every_route_has_a_scope_and_new_ones_are_closed() -> None:
    assert api.auth.scope_of("/healthz") is None
    assert api.auth.scope_of("/v1/decisions") == "decide"
    assert api.auth.scope_of("/v1/decisions/{decision_id}/activate") == "decide"
    assert api.auth.scope_of("/v1/events") == "events"
    assert api.auth.scope_of("/metrics") == "admin"
    assert api.auth.scope_of("/v1/decisionsx") == "admin"
    assert api.auth.scope_of("/v2/anything") == "admin"
