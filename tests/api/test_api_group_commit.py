"""Group commit in the service: concurrent requests share durable commits through one batch
writer per worker, every record is written once, refusals keep their status codes, and an
in-memory database (one shared connection) writes directly."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from api_keys import authorize
from fastapi.testclient import TestClient
from store_inputs import rows_at

from api.app import create_app
from api.settings import Settings
from fm_core import ItemCatalog, PopularityAffinityScorer

BODY = {"surface": "home", "context": {"device": "tv", "country": "US"}, "k": 3}


def test_concurrent_decisions_share_commits_and_each_is_stored_once(
    tmp_path: Path, small_catalog: ItemCatalog
) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'gc.db'}", group_commit_wait_ms=100.0)
    scorer = PopularityAffinityScorer(small_catalog, model_version="m")
    n = 16
    start = threading.Barrier(n)

    with TestClient(create_app(settings, scorer=scorer)) as client:
        authorize(client)

        def decide(i: int) -> int:
            start.wait()
            return client.post("/v1/decisions", json=BODY | {"user_id": f"u{i}"}).status_code

        with ThreadPoolExecutor(n) as pool:
            codes = list(pool.map(decide, range(n)))
        stats = client.app.state.writer.stats  # type: ignore[attr-defined]
        assert codes == [201] * n
        assert stats.records == n
        # 16 requests started together, each batch open for 100 ms: some of them shared one.
        assert stats.commits < n
    assert rows_at(settings.database_url, "decision") == n
    assert rows_at(settings.database_url, "slate_item") == 3 * n


def test_refusals_through_the_writer_keep_their_codes_and_write_nothing(
    tmp_path: Path, small_catalog: ItemCatalog
) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'gc.db'}")
    scorer = PopularityAffinityScorer(small_catalog, model_version="m")
    with TestClient(create_app(settings, scorer=scorer)) as client:
        authorize(client)
        assert client.app.state.writer is not None  # type: ignore[attr-defined]
        decided = client.post("/v1/decisions", json=BODY | {"user_id": "u1"}).json()
        event = {"event_id": "e1", "user_id": "u1", "item_id": decided["slate"][0]["item_id"],
                 "kind": "play", "source": "rec", "decision_id": decided["decision_id"],
                 "position": 0, "created_at": "2026-11-22T10:00:00Z"}  # fmt: skip
        assert client.post("/v1/events", json=event).status_code == 201
        assert client.post("/v1/events", json=event).status_code == 200  # a replay: a no-op
        changed = client.post("/v1/events", json=event | {"value": 5.0})
        assert changed.status_code == 409, changed.text
        orphan = event | {"event_id": "e2", "decision_id": str(uuid.uuid4())}
        unknown = client.post("/v1/events", json=orphan)
        assert unknown.status_code == 404, unknown.text
        assert "decision_id" in unknown.text
    assert rows_at(settings.database_url, "event") == 1


def test_without_group_commit_or_on_an_in_memory_database_there_is_no_writer(
    tmp_path: Path, small_catalog: ItemCatalog
) -> None:
    scorer = PopularityAffinityScorer(small_catalog, model_version="m")
    for settings in (
        Settings(database_url=f"sqlite:///{tmp_path / 'direct.db'}", group_commit=False),
        Settings(database_url="sqlite:///:memory:"),
    ):
        with TestClient(create_app(settings, scorer=scorer)) as client:
            authorize(client)
            assert client.app.state.writer is None  # type: ignore[attr-defined]
            response = client.post("/v1/decisions", json=BODY | {"user_id": "u1"})
            assert response.status_code == 201, response.text
    assert rows_at(f"sqlite:///{tmp_path / 'direct.db'}", "decision") == 1
