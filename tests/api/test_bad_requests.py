"""A table of bad requests against the real app, on both back ends: each is refused with its
status (never a 5xx), in the service's one error shape, naming the field the client got wrong,
and nothing of it is written to any table of the log.

The table covers the decision and event bodies field by field (types, bounds, NUL, times at the
limits of the log and of Python's datetime, unknown fields, cross-field rules), whole bodies that
do not parse, conflicting replays of stored ids, activations, credentials, size, paths and
methods. One test per back end walks the whole table and reports every row that misbehaved.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from api_keys import authorize
from fastapi.testclient import TestClient
from store_inputs import rows_at

from api.app import create_app
from api.settings import Settings
from fm_core import ItemCatalog, PopularityAffinityScorer

TABLES = ("decision", "slate_item", "event", "decision_activation")
CANDIDATES = [3, 5, 7, 11, 13, 19]
STORED = str(uuid.UUID(int=1))
DEFERRED = str(uuid.UUID(int=2))
STORED_EVENT = "stored-event"
MAX_K = 20


@dataclass(frozen=True)
class Shown:
    """What the setup stored: a decision's slate (item ids by position)."""

    slate: list[int]


def decision(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "user_id": "u1",
        "surface": "home",
        "context": {"device": "tv", "country": "US", "local_time": "2026-11-22T20:15:00-05:00"},
        "candidates": list(CANDIDATES),
        "k": 3,
    }
    for key, value in changes.items():
        if key.startswith("context."):
            body["context"][key.removeprefix("context.")] = value
        elif value is DROP:
            body.pop(key)
        else:
            body[key] = value
    return body


def event(shown: Shown, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "event_id": f"e-{uuid.uuid4()}",
        "user_id": "u1",
        "item_id": shown.slate[0],
        "kind": "play",
        "value": 30.0,
        "source": "rec",
        "decision_id": STORED,
        "position": 0,
    }
    for key, value in changes.items():
        if value is DROP:
            body.pop(key)
        else:
            body[key] = value
    return body


DROP = object()
"""A change that removes the field."""


@dataclass(frozen=True)
class Bad:
    """One bad request: ``body`` is JSON (a dict or list), raw bytes, or a function of what the
    setup stored."""

    name: str
    status: int
    field: str
    body: Any = None
    path: str = "/v1/decisions"
    method: str = "POST"
    headers: dict[str, str] = field(default_factory=dict)
    authorized: bool = True


def d(name: str, field_: str, status: int = 422, **changes: Any) -> Bad:
    return Bad(name, status, field_, decision(**changes))


def e(name: str, field_: str, status: int = 422, **changes: Any) -> Bad:
    return Bad(name, status, field_, lambda shown: event(shown, **changes), path="/v1/events")


def raw(name: str, body: bytes, path: str = "/v1/decisions", **headers: str) -> Bad:
    return Bad(
        name, 422, "body", body, path, headers={"content-type": "application/json", **headers}
    )


def raw_event_value(name: str, token: str) -> Bad:
    """An event whose ``value`` is a bare JSON token that Python's parser accepts (NaN...)."""

    def body(shown: Shown) -> bytes:
        text = json.dumps(event(shown, value=0.0)).replace('"value": 0.0', f'"value": {token}')
        return text.encode()

    return Bad(name, 422, "value", body, "/v1/events", headers={"content-type": "application/json"})


LONG = "x" * 129
BAD_REQUESTS: list[Bad] = [
    # ---- whole bodies ----------------------------------------------------------------------
    raw("not json", b"{not json"),
    raw("empty body", b""),
    raw("json null", b"null"),
    raw("json array", b"[]"),
    raw("json string", b'"decide"'),
    raw("json number", b"42"),
    raw("invalid utf-8", b"\xff{\xfe"),
    raw("truncated json", b'{"user_id": "u1", "surface": "ho'),
    Bad("text/plain body", 422, "body", b'{"user_id": "u1"}',
        headers={"content-type": "text/plain"}),
    raw("events body not json", b"{", path="/v1/events"),
    raw("events body an array", b"[{}]", path="/v1/events"),
    # ---- decisions: user_id, surface -------------------------------------------------------
    d("missing user_id", "user_id", user_id=DROP),
    d("null user_id", "user_id", user_id=None),
    d("empty user_id", "user_id", user_id=""),
    d("user_id of 129 characters", "user_id", user_id=LONG),
    d("numeric user_id", "user_id", user_id=5),
    d("user_id a list", "user_id", user_id=["u1"]),
    d("NUL in user_id", "user_id", user_id="u\x001"),
    d("missing surface", "surface", surface=DROP),
    d("unknown surface", "surface", surface="homepage"),
    d("empty surface", "surface", surface=""),
    d("numeric surface", "surface", surface=1),
    d("NUL in surface", "surface", surface="home\x00"),
    # ---- decisions: k ---------------------------------------------------------------------
    d("k zero", "k", k=0),
    d("k negative", "k", k=-1),
    d("k a string", "k", k="3"),
    d("k true", "k", k=True),
    d("k a fraction", "k", k=2.5),
    d("k a float", "k", k=2.0),
    d("k null", "k", k=None),
    d("k above max_k", "k", k=MAX_K + 1, candidates=list(range(MAX_K + 1))),
    d("k above the schema's bound", "k", k=501),
    d("k above the number of candidates", "k", k=len(CANDIDATES) + 1),
    d("k an object", "k", k={"n": 3}),
    # ---- decisions: decision_id ----------------------------------------------------------------
    d("decision_id not a uuid", "decision_id", decision_id="abc"),
    d("decision_id a number", "decision_id", decision_id=123),
    d("decision_id empty", "decision_id", decision_id=""),
    d("decision_id NUL", "decision_id", decision_id=STORED[:-1] + "\x00"),
    # ---- decisions: candidates ---------------------------------------------------------------
    d("candidates empty", "candidates", candidates=[]),
    d("candidates duplicated", "candidates", candidates=[3, 3]),
    d("candidate negative", "candidates.1", candidates=[3, -1]),
    d("candidate false", "candidates.0", candidates=[False, 3]),
    d("candidate a string", "candidates.0", candidates=["3", 5]),
    d("candidate a fraction", "candidates.0", candidates=[1.5, 3]),
    d("candidate above int64", "candidates.0", candidates=[2**63, 3]),
    d("candidate null", "candidates.0", candidates=[None, 3]),
    d("candidates a string", "candidates", candidates="3,5"),
    d("candidates an object", "candidates", candidates={"3": 1}),
    d("candidates over 10,000", "candidates", candidates=list(range(10_001))),
    d("candidate not in the catalog", "candidates", candidates=[3, 5, 999_999]),
    # ---- decisions: context -----------------------------------------------------------------
    d("context null", "context", context=None),
    d("context a string", "context", context="tv"),
    d("device empty", "context.device", **{"context.device": ""}),
    d("device of 33 characters", "context.device", **{"context.device": "d" * 33}),
    d("NUL in device", "context.device", **{"context.device": "t\x00v"}),
    d("country of three letters", "context.country", **{"context.country": "USA"}),
    d("country in lower case", "context.country", **{"context.country": "us"}),
    d("local_time naive", "context.local_time", **{"context.local_time": "2026-11-22T20:00:00"}),
    d("local_time words", "context.local_time", **{"context.local_time": "yesterday"}),
    d("local_time before 1970", "context.local_time",
      **{"context.local_time": "1969-12-31T23:59:59+00:00"}),
    d("local_time past 2261", "context.local_time",
      **{"context.local_time": "2262-04-12T00:00:00+00:00"}),
    d("local_time at datetime's start", "context.local_time",
      **{"context.local_time": "0001-01-01T00:00:00+01:00"}),
    d("local_time at datetime's end", "context.local_time",
      **{"context.local_time": "9999-12-31T23:59:59-01:00"}),
    d("query of 513 characters", "context.query", **{"context.query": "q" * 513}),
    d("NUL in query", "context.query", **{"context.query": "space\x00"}),
    d("source_item negative", "context.source_item", **{"context.source_item": -1}),
    d("source_item a string", "context.source_item", **{"context.source_item": "3"}),
    d("source_item true", "context.source_item", **{"context.source_item": True}),
    d("unknown context field", "context.devise", **{"context.devise": "tv"}),
    d("unknown top-level field", "kk", kk=3),
    d("deferred a string", "deferred", deferred="yes"),
    d("deferred a number", "deferred", deferred=1),
    # ---- decisions: replays of a stored decision_id with another request -----------------------
    d("replay with another k", "k", 409, decision_id=STORED, k=2),
    d("replay by another user", "user_id", 409, decision_id=STORED, user_id="u2"),
    d("replay on another surface", "surface", 409, decision_id=STORED, surface="search"),
    d("replay with other candidates", "candidates", 409, decision_id=STORED, candidates=[3, 5, 7]),
    d("replay that is not deferred", "deferred", 409, decision_id=DEFERRED),
    d("replay deferred of a shown decision", "deferred", 409, decision_id=STORED, deferred=True),
    # ---- events: ids and user -----------------------------------------------------------------
    e("missing event_id", "event_id", event_id=DROP),
    e("empty event_id", "event_id", event_id=""),
    e("event_id of 129 characters", "event_id", event_id=LONG),
    e("numeric event_id", "event_id", event_id=7),
    e("NUL in event_id", "event_id", event_id="e\x00"),
    e("missing user_id", "user_id", user_id=DROP),
    e("NUL in user_id", "user_id", user_id="u\x001"),
    e("user other than the decision's", "user_id", user_id="u2"),
    # ---- events: item, kind, source, value ----------------------------------------------------
    e("missing item_id", "item_id", item_id=DROP),
    e("item_id negative", "item_id", item_id=-1),
    e("item_id a string", "item_id", item_id="3"),
    e("item_id true", "item_id", item_id=True),
    e("item_id a fraction", "item_id", item_id=1.5),
    e("item_id above int64", "item_id", item_id=2**63),
    e("missing kind", "kind", kind=DROP),
    e("unknown kind", "kind", kind="watch"),
    e("NUL in kind", "kind", kind="play\x00"),
    e("missing source", "source", source=DROP),
    e("unknown source", "source", source="email"),
    e("value negative", "value", value=-1.0),
    e("value a string", "value", value="30"),
    e("value true", "value", value=True),
    e("value null", "value", value=None),
    raw_event_value("value NaN", "NaN"),
    raw_event_value("value Infinity", "Infinity"),
    raw_event_value("value overflowing to infinity", "1e309"),
    # ---- events: attribution -------------------------------------------------------------------
    e("decision_id not a uuid", "decision_id", decision_id="nope"),
    e("decision_id unknown", "decision_id", 404, decision_id=str(uuid.UUID(int=99))),
    e("position negative", "position", position=-1),
    e("position a string", "position", position="0"),
    e("position true", "position", position=True),
    e("position without a decision_id", "position", decision_id=DROP, source="direct"),
    e("position outside the slate", "position", position=5),
    Bad("item not at that position", 422, "item_id",
        lambda shown: event(shown, item_id=shown.slate[1], position=0), path="/v1/events"),
    Bad("item not in the slate, no position", 422, "item_id",
        lambda shown: event(shown, position=None,
                            item_id=next(c for c in CANDIDATES if c not in shown.slate)),
        path="/v1/events"),
    e("a deferred decision not activated", "decision_id", 409, decision_id=DEFERRED),
    # ---- events: times and fields --------------------------------------------------------------
    e("created_at naive", "created_at", created_at="2026-01-01T00:00:00"),
    e("created_at words", "created_at", created_at="now"),
    e("created_at before 1970", "created_at", created_at="1969-12-31T23:59:59Z"),
    e("created_at past 2261", "created_at", created_at="2262-04-12T00:00:00Z"),
    e("created_at at datetime's start", "created_at", created_at="0001-01-01T00:00:00+01:00"),
    e("created_at at datetime's end", "created_at", created_at="9999-12-31T23:59:59-01:00"),
    e("created_at a number", "created_at", created_at=1_700_000_000),
    d("local_time a number", "context.local_time", **{"context.local_time": 1_700_000_000}),
    e("unknown event field", "itemid", itemid=3),
    Bad("stored event_id, other content", 409, "kind",
        lambda shown: event(shown, event_id=STORED_EVENT, kind="click"), path="/v1/events"),
    # ---- activation ----------------------------------------------------------------------------
    Bad("activate a malformed id", 422, "decision_id", path="/v1/decisions/abc/activate"),
    Bad("activate an unknown decision", 404, "decision_id",
        path=f"/v1/decisions/{uuid.UUID(int=98)}/activate"),
    Bad("activate a decision that was not deferred", 409, "decision_id",
        path=f"/v1/decisions/{STORED}/activate"),
    # ---- credentials, size, paths, methods -------------------------------------------------------
    Bad("no API key", 401, "authorization", decision(), authorized=False),
    Bad("a wrong API key", 401, "authorization", decision(), authorized=False,
        headers={"authorization": "Bearer lb_nokey_nosecret"}),
    Bad("an event without an API key", 401, "authorization",
        lambda shown: event(shown), path="/v1/events", authorized=False),
    Bad("a body over the size limit", 413, "body",
        b'{"user_id": "' + b"u" * 1_100_000 + b'"}', headers={"content-type": "application/json"}),
    Bad("an unknown path", 404, "path", decision(), path="/v1/decision"),
    Bad("a method the path does not take", 405, "method", None, method="PUT"),
]  # fmt: skip


def _send(client: TestClient, bad: Bad, shown: Shown) -> Any:
    body = bad.body(shown) if callable(bad.body) else bad.body
    kwargs: dict[str, Any] = {"headers": dict(bad.headers)}
    if isinstance(body, bytes):
        kwargs["content"] = body
    elif body is not None:
        kwargs["json"] = body
    if not bad.authorized:
        kwargs["headers"].setdefault("authorization", "")
        return TestClient(client.app).request(bad.method, bad.path, **kwargs)
    return client.request(bad.method, bad.path, **kwargs)


def _misbehaviour(bad: Bad, response: Any, before: dict[str, int], after: dict[str, int]) -> str:
    """What is wrong with the service's answer to ``bad`` ('' when nothing)."""
    if response.status_code != bad.status:
        return f"status {response.status_code}, expected {bad.status}: {response.text[:200]}"
    try:
        payload = response.json()
    except ValueError:
        return f"not JSON: {response.text[:200]}"
    if set(payload) != {"message", "detail"} or not payload["detail"]:
        return f"not the error shape: {payload}"
    if payload["detail"][0].get("field") != bad.field:
        return f"names {payload['detail'][0].get('field')!r}, expected {bad.field!r}"
    if not all(set(d) == {"field", "message", "type"} for d in payload["detail"]):
        return f"a detail entry is not (field, message, type): {payload['detail']}"
    if before != after:
        return f"wrote rows: {before} -> {after}"
    return ""


def _setup(client: TestClient) -> Shown:
    stored = client.post("/v1/decisions", json=decision(decision_id=STORED))
    assert stored.status_code == 201, stored.text
    deferred = client.post("/v1/decisions", json=decision(decision_id=DEFERRED, deferred=True))
    assert deferred.status_code == 201, deferred.text
    shown = Shown([p["item_id"] for p in stored.json()["slate"]])
    played = client.post("/v1/events", json=event(shown, event_id=STORED_EVENT))
    assert played.status_code == 201, played.text
    return shown


def test_the_table_has_at_least_100_bad_requests() -> None:
    assert len(BAD_REQUESTS) >= 100
    assert len({(bad.path, bad.name) for bad in BAD_REQUESTS}) == len(BAD_REQUESTS)


def test_every_bad_request_is_refused_naming_its_field_and_nothing_is_written(
    log_url: str, small_catalog: ItemCatalog
) -> None:
    settings = Settings(database_url=log_url, max_k=MAX_K, reload_seconds=0)
    scorer = PopularityAffinityScorer(small_catalog, model_version="test-model")
    counts: Callable[[], dict[str, int]] = lambda: {t: rows_at(log_url, t) for t in TABLES}  # noqa: E731
    with TestClient(create_app(settings, scorer=scorer)) as client:
        authorize(client)
        shown = _setup(client)
        failures = []
        for bad in BAD_REQUESTS:
            before = counts()
            response = _send(client, bad, shown)
            wrong = _misbehaviour(bad, response, before, counts())
            if wrong:
                failures.append(f"{bad.method} {bad.path} {bad.name}: {wrong}")
        server_errors = [
            line
            for line in client.get("/metrics").text.splitlines()
            if line.startswith("loopbreak_http_errors_total{")
        ]
    assert not failures, "\n".join(failures)
    assert not server_errors, server_errors
