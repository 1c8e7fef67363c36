"""A database outage under the HTTP service: a held SQLite write lock (or an unreachable
PostgreSQL server) answers 503 with ``Retry-After`` and the service's JSON error body within the
settings' bound, counted in ``/metrics``; nothing is answered 201 that was not logged."""

from __future__ import annotations

import socket
import sqlite3
import time
from pathlib import Path
from typing import Any

from api_keys import authorize
from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import Settings
from fm_core import ItemCatalog, PopularityAffinityScorer
from proplog.engine import init_db, make_engine

BOUND_S = 0.5
MARGIN_S = 2.0


def decision_body() -> dict[str, Any]:
    return {"user_id": "u1", "surface": "home", "k": 5}


def decisions_stored(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute("SELECT count(*) FROM decision").fetchone()[0])


def assert_unavailable(response: Any) -> None:
    assert response.status_code == 503, response.text
    assert int(response.headers["retry-after"]) >= 1
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"message", "detail"}
    assert body["detail"][0]["field"] == "database"
    assert "Traceback" not in response.text
    assert "sqlite:" not in response.text and "postgresql" not in response.text


def test_a_held_sqlite_write_lock_answers_503_within_the_bound(
    tmp_path: Path, small_catalog: ItemCatalog
) -> None:
    path = tmp_path / "api.db"
    settings = Settings(database_url=f"sqlite:///{path}", db_timeout_seconds=BOUND_S, max_k=20)
    scorer = PopularityAffinityScorer(small_catalog, model_version="test-model")
    with TestClient(create_app(settings, scorer=scorer)) as client:
        authorize(client)
        assert client.post("/v1/decisions", json=decision_body()).status_code == 201
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            started = time.monotonic()
            response = client.post("/v1/decisions", json=decision_body())
            elapsed = time.monotonic() - started
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert_unavailable(response)
        assert elapsed < BOUND_S + MARGIN_S, elapsed
        metrics = client.get("/metrics").text
        assert (
            'loopbreak_http_errors_total{cause="database_unavailable",status="503"} 1.0' in metrics
        )
        assert decisions_stored(path) == 1  # the refused decision was not logged
        assert client.post("/v1/decisions", json=decision_body()).status_code == 201
    assert decisions_stored(path) == 2


def test_the_writer_free_path_answers_503_too(tmp_path: Path, small_catalog: ItemCatalog) -> None:
    path = tmp_path / "api.db"
    settings = Settings(
        database_url=f"sqlite:///{path}", db_timeout_seconds=BOUND_S, group_commit=False
    )
    scorer = PopularityAffinityScorer(small_catalog, model_version="test-model")
    with TestClient(create_app(settings, scorer=scorer)) as client:
        authorize(client)
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            response = client.post("/v1/decisions", json=decision_body())
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert_unavailable(response)
        assert client.post("/v1/decisions", json=decision_body()).status_code == 201


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_unreachable_postgresql_server_answers_503(
    tmp_path: Path, small_catalog: ItemCatalog
) -> None:
    """The app starts on a working log, then its engine points at a closed port (a stopped
    server), as after an outage: every request that needs the database answers 503."""
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'api.db'}", db_timeout_seconds=BOUND_S,
        group_commit=False,
    )  # fmt: skip
    init_db(make_engine(settings.database_url))
    down = make_engine(
        f"postgresql+psycopg://loopbreak:secret@127.0.0.1:{_closed_port()}/loopbreak",
        timeout_s=BOUND_S,
    )
    scorer = PopularityAffinityScorer(small_catalog, model_version="test-model")
    with TestClient(create_app(settings, scorer=scorer)) as client:
        authorize(client)
        client.app.state.engine = down  # type: ignore[attr-defined]
        started = time.monotonic()
        response = client.post("/v1/decisions", json=decision_body())
        elapsed = time.monotonic() - started
        assert_unavailable(response)
        assert "secret" not in response.text
        assert elapsed < BOUND_S + MARGIN_S + 2.0, elapsed  # libpq's connect_timeout is >= 2 s
    down.dispose()
