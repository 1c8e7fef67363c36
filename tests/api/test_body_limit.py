"""The request body limit: a body over ``Settings.max_body_bytes`` is refused with 413 and the
service's error body before it is parsed, with or without a Content-Length; one at the limit is
handled as usual."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from api_keys import authorize
from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import Settings
from fm_core import ItemCatalog, PopularityAffinityScorer

LIMIT = 4096


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "api.db"


@pytest.fixture
def limited(db_path: Path, small_catalog: ItemCatalog) -> Iterator[TestClient]:
    settings = Settings(database_url=f"sqlite:///{db_path}", max_k=20, max_body_bytes=LIMIT)
    scorer = PopularityAffinityScorer(small_catalog, model_version="test-model")
    with TestClient(create_app(settings, scorer=scorer)) as client:
        authorize(client)
        yield client


def padded_decision(size: int) -> bytes:
    """A valid decision request of exactly ``size`` bytes (JSON with trailing whitespace)."""
    body = json.dumps({"user_id": "u1", "surface": "home", "k": 5}).encode()
    return body + b" " * (size - len(body))


def decisions_stored(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute("SELECT count(*) FROM decision").fetchone()[0])


def assert_too_large(response: object) -> None:
    assert response.status_code == 413, response.text  # type: ignore[attr-defined]
    body = response.json()  # type: ignore[attr-defined]
    assert set(body) == {"message", "detail"}
    assert str(LIMIT) in body["message"]
    assert body["detail"][0]["field"] == "body"


HEADERS = {"content-type": "application/json"}


def test_a_body_over_the_limit_is_refused_with_413_and_nothing_written(
    limited: TestClient, db_path: Path
) -> None:
    response = limited.post("/v1/decisions", content=padded_decision(LIMIT + 1), headers=HEADERS)
    assert_too_large(response)
    assert decisions_stored(db_path) == 0
    metrics = limited.get("/metrics").text
    assert 'loopbreak_rejected_requests_total{status="413"} 1.0' in metrics


def test_a_body_at_the_limit_is_handled(limited: TestClient, db_path: Path) -> None:
    response = limited.post("/v1/decisions", content=padded_decision(LIMIT), headers=HEADERS)
    assert response.status_code == 201, response.text
    assert decisions_stored(db_path) == 1


def test_a_chunked_body_over_the_limit_is_refused_with_413(
    limited: TestClient, db_path: Path
) -> None:
    chunks = [padded_decision(LIMIT)[:1000]] + [b" " * 1000] * 10  # no Content-Length

    response = limited.post("/v1/decisions", content=iter(chunks), headers=HEADERS)
    assert "content-length" not in response.request.headers
    assert_too_large(response)
    assert decisions_stored(db_path) == 0


def test_a_chunked_body_under_the_limit_is_handled(limited: TestClient, db_path: Path) -> None:
    body = padded_decision(LIMIT)
    chunks = [body[i : i + 1000] for i in range(0, len(body), 1000)]
    response = limited.post("/v1/decisions", content=iter(chunks), headers=HEADERS)
    assert response.status_code == 201, response.text


def test_the_default_limit_admits_the_largest_legitimate_decision() -> None:
    body = json.dumps(
        {"user_id": "u" * 128, "surface": "s" * 128, "k": 500,
         "candidates": [2**63 - 1 - i for i in range(10_000)]},
        indent=2,
    ).encode()  # fmt: skip
    assert len(body) < Settings().max_body_bytes
