"""The lean path of ``POST /v1/decisions`` answers exactly as the FastAPI route does: the same
status, headers and body for every request, whether it answers itself (a cached key, a body that
validates) or hands the request on to the route (everything else). Each request is sent to an
app with the lean path and to one without it, on logs of their own, with the same decision id,
so the two answers can differ only in the time the decision was made."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from api_keys import bearer, new_token
from fastapi.testclient import TestClient

import api.app
from api.app import create_app
from api.lean_decisions import LeanDecisions
from api.settings import Settings
from fm_core import ItemCatalog, PopularityAffinityScorer
from proplog.api_keys import create_key, parse_token, revoke_key

BODY = {"user_id": "u1", "surface": "home", "k": 3, "context": {"device": "tv"}}
MAX_BODY = 50_000


class Pair:
    """The same request to the app with the lean path (``lean``) and without (``route``)."""

    def __init__(self, lean: TestClient, route: TestClient, tokens: dict[str, list[str]]) -> None:
        self.lean, self.route, self.tokens = lean, route, tokens


def _count_hand_ons(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths of the requests the lean path hands on to the route, from now on."""
    handed_on: list[str] = []
    original = LeanDecisions._hand_on

    async def spy(self, scope, messages, receive, send) -> None:  # type: ignore[no-untyped-def]
        handed_on.append(scope["path"])
        await original(self, scope, messages, receive, send)

    monkeypatch.setattr(LeanDecisions, "_hand_on", spy)
    return handed_on


@pytest.fixture
def pair(
    tmp_path: Path, small_catalog: ItemCatalog, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Pair, list[str]]]:
    """Both apps, each with keys (index 0: every scope, 1: events only) whose tokens are
    ``pair.tokens[name]`` in app order; and the list of requests the lean path handed on."""
    handed_on = _count_hand_ons(monkeypatch)
    clients = []
    tokens: dict[str, list[str]] = {"all": [], "events": []}
    for name, lean in (("lean", True), ("route", False)):
        url = f"sqlite:///{tmp_path / f'{name}.db'}"
        tokens["all"].append(new_token(url))
        tokens["events"].append(new_token(url, ("events",), name="events-only"))
        settings = Settings(database_url=url, max_k=20, max_body_bytes=MAX_BODY)
        scorer = PopularityAffinityScorer(small_catalog, model_version="test-model")
        if not lean:
            monkeypatch.setattr(api.app, "install_lean_decisions", lambda app: None)
        clients.append(TestClient(create_app(settings, scorer=scorer)))
    with clients[0] as lean_client, clients[1] as route_client:
        yield Pair(lean_client, route_client, tokens), handed_on


def _same(lean: Any, route: Any, tokens: dict[str, list[str]] | None = None) -> None:
    """The two answers alike, but for the times of making and (``tokens``) the key ids, which
    differ between the two logs."""
    assert lean.status_code == route.status_code, (lean.text, route.text)
    assert list(lean.headers.keys()) == list(route.headers.keys())
    assert lean.headers["content-type"] == route.headers["content-type"]
    assert lean.headers.get("www-authenticate") == route.headers.get("www-authenticate")
    text = lean.text
    if tokens:
        for ours, theirs in zip(tokens["lean"], tokens["route"], strict=True):
            text = text.replace(_key_id(ours), _key_id(theirs))
    left, right = json.loads(text), route.json()
    if isinstance(left, dict):
        for when in ("created_at", "activation_expires_at"):  # the times of making differ
            assert (left.pop(when, None) is None) == (right.pop(when, None) is None)
    assert left == right


def _key_id(token: str) -> str:
    parsed = parse_token(token)
    assert parsed is not None
    return parsed[0]


def _decision(**changes: Any) -> dict[str, Any]:
    return {**BODY, "decision_id": str(uuid.uuid4()), **changes}


# (name, body or raw bytes, header kind, extra headers, handed on?)
CASES: list[tuple[str, Any, str, dict[str, str], bool]] = [
    ("made", _decision(), "bearer", {}, False),
    ("made-x-api-key", _decision(), "x-api-key", {}, False),
    ("made-json-suffix-type", _decision(), "bearer",
     {"content-type": "application/vnd.loopbreak+json"}, False),
    ("made-json-with-charset", _decision(), "bearer",
     {"content-type": "application/json; charset=utf-8"}, False),
    ("deferred", _decision(deferred=True), "bearer", {}, False),
    ("given-candidates", _decision(candidates=[3, 1, 2, 5]), "bearer", {}, False),
    ("k-over-max", _decision(k=21), "bearer", {}, False),
    ("unknown-candidate", _decision(candidates=[1, 2, 99_999]), "bearer", {}, False),
    ("no-key", _decision(), "none", {}, True),
    ("malformed-bearer", _decision(), "malformed", {}, True),
    ("unknown-key", _decision(), "unknown", {}, True),
    ("key-without-scope", _decision(), "events-only", {}, True),
    ("missing-user", {k: v for k, v in BODY.items() if k != "user_id"}, "bearer", {}, True),
    ("k-zero", _decision(k=0), "bearer", {}, True),
    ("bad-surface", _decision(surface="sofa"), "bearer", {}, True),
    ("not-json", b"{user_id: u1", "bearer", {}, True),
    ("not-utf8", b'{"user_id": "\xff"}', "bearer", {}, True),
    ("json-array", [BODY], "bearer", {}, True),
    ("text-plain", _decision(), "bearer", {"content-type": "text/plain"}, True),
]  # fmt: skip


def _headers(pair: Pair, kind: str, extra: dict[str, str]) -> list[dict[str, str]]:
    """The request headers for each app (their keys differ), in app order."""
    out = []
    for i in range(2):
        token, events_only = pair.tokens["all"][i], pair.tokens["events"][i]
        headers = {
            "bearer": bearer(token),
            "x-api-key": {"X-API-Key": token},
            "none": {},
            "malformed": {"Authorization": f"Bearer  {token}"},
            "unknown": bearer("lb_" + "0" * (len(token) - 3)),
            "events-only": bearer(events_only),
        }[kind]
        out.append({"content-type": "application/json", **headers, **extra})
    return out


def _tokens(pair: Pair, i: int) -> list[str]:
    return [pair.tokens["all"][i], pair.tokens["events"][i]]


def _warm(pair: Pair) -> None:
    """One request per key, so that each app's key cache holds both keys."""
    for kind in ("bearer", "events-only"):
        for client, headers in zip((pair.lean, pair.route), _headers(pair, kind, {}), strict=True):
            client.post("/v1/decisions", json=_decision(), headers=headers)


@pytest.mark.parametrize(
    ("name", "body", "kind", "extra", "handed"), CASES, ids=[c[0] for c in CASES]
)
def test_every_request_is_answered_as_the_route_answers_it(
    pair: tuple[Pair, list[str]],
    name: str,
    body: Any,
    kind: str,
    extra: dict[str, str],
    handed: bool,
) -> None:
    apps, handed_on = pair
    _warm(apps)
    handed_on.clear()
    raw = body if isinstance(body, bytes) else None
    answers = []
    for client, headers in zip((apps.lean, apps.route), _headers(apps, kind, extra), strict=True):
        content = raw if raw is not None else json.dumps(body).encode()
        answers.append(client.post("/v1/decisions", content=content, headers=headers))
    _same(*answers, {"lean": _tokens(apps, 0), "route": _tokens(apps, 1)})
    assert handed_on == (["/v1/decisions"] if handed else [])


def test_a_replay_and_a_conflict_are_answered_as_the_route_answers_them(
    pair: tuple[Pair, list[str]],
) -> None:
    apps, handed_on = pair
    _warm(apps)
    handed_on.clear()
    first = _decision()
    for client, headers in zip((apps.lean, apps.route), _headers(apps, "bearer", {}), strict=True):
        assert client.post("/v1/decisions", json=first, headers=headers).status_code == 201
    replays, conflicts = [], []
    for client, headers in zip((apps.lean, apps.route), _headers(apps, "bearer", {}), strict=True):
        replays.append(client.post("/v1/decisions", json=first, headers=headers))
        conflicts.append(
            client.post("/v1/decisions", json={**first, "user_id": "u2"}, headers=headers)
        )
    _same(*replays)
    assert replays[0].status_code == 200 and replays[0].json()["replayed"] is True
    _same(*conflicts)
    assert conflicts[0].status_code == 409
    assert handed_on == []


def test_a_body_over_the_limit_is_refused_on_the_lean_path_too(
    pair: tuple[Pair, list[str]],
) -> None:
    apps, _ = pair
    _warm(apps)
    big = _decision(candidates=list(range(1, 20_000)))
    answers = []
    for client, headers in zip((apps.lean, apps.route), _headers(apps, "bearer", {}), strict=True):
        answers.append(client.post("/v1/decisions", json=big, headers=headers))
    _same(*answers)
    assert answers[0].status_code == 413


def test_with_the_key_cache_off_every_request_is_checked_by_the_route(
    tmp_path: Path, small_catalog: ItemCatalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lean path trusts only the key cache that the route's check fills: with the cache off
    (``key_cache_seconds`` 0), every request goes to the route, which reads the key in the log,
    so that a revocation takes effect on the next request."""
    handed_on = _count_hand_ons(monkeypatch)
    url = f"sqlite:///{tmp_path / 'off.db'}"
    settings = Settings(database_url=url, max_k=20, key_cache_seconds=0)
    scorer = PopularityAffinityScorer(small_catalog, model_version="test-model")
    with TestClient(create_app(settings, scorer=scorer)) as client:
        record, token = create_key(client.app.state.engine, "tests", ("decide",))
        for _ in range(2):
            answer = client.post("/v1/decisions", json=_decision(), headers=bearer(token))
            assert answer.status_code == 201
        revoke_key(client.app.state.engine, record.key_id)
        answer = client.post("/v1/decisions", json=_decision(), headers=bearer(token))
        assert answer.status_code == 401
    assert handed_on == ["/v1/decisions"] * 3


def test_a_body_in_several_chunks_is_read_whole(
    pair: tuple[Pair, list[str]],
) -> None:
    apps, handed_on = pair
    _warm(apps)
    handed_on.clear()
    body = json.dumps(_decision()).encode()

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 7):
            yield body[start : start + 7]

    answer = apps.lean.post(
        "/v1/decisions", content=chunks(), headers=_headers(apps, "bearer", {})[0]
    )
    assert answer.status_code == 201, answer.text
    assert answer.json()["user_id"] == "u1"
    assert handed_on == []
