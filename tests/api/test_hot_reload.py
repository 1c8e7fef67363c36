"""Hot reload: an app started without a model file serves the log's production version, follows
a promotion while requests run (no request fails, each decision is recorded with the model that
answered it, later ones carry the new version), and ``/healthz`` says what is served with the
database password masked."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

from api_keys import authorize
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlmodel import Session

from api.app import create_app
from api.routes.health import serving_info
from api.settings import Settings
from explore import EpsilonGreedySlate
from fm_core import ItemCatalog, PopularityAffinityScorer
from loop.models import promote
from loop.service import DecisionService
from proplog.engine import init_db, make_engine
from proplog.registry import record_model_version


def test_a_promotion_is_served_while_requests_run(
    tmp_path: Path, small_catalog: ItemCatalog
) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    engine = make_engine(url)
    init_db(engine)
    with Session(engine) as session:
        for version in ("m1", "m2"):
            path = PopularityAffinityScorer(small_catalog, model_version=version).save(
                tmp_path / f"{version}.npz"
            )
            record_model_version(
                session=session, version=version, kind="baseline", params={}, metrics={},
                path=str(path),
            )  # fmt: skip
    promote(engine, "m1")
    settings = Settings(
        database_url=url, model_path=tmp_path / "none.npz", reload_seconds=0.05, max_k=20
    )
    answers: list[tuple[int, str | None, str]] = []
    stop = threading.Event()

    def keep_deciding(client: TestClient) -> None:
        while not stop.is_set():
            body = {"user_id": "u1", "surface": "home", "k": 3, "decision_id": str(uuid.uuid4())}
            response = client.post("/v1/decisions", json=body)
            version = response.json().get("model_version") if response.status_code == 201 else None
            answers.append((response.status_code, version, body["decision_id"]))

    with TestClient(create_app(settings)) as client:
        authorize(client)
        assert client.get("/healthz").json()["model_version"] == "m1"  # from the log
        workers = [threading.Thread(target=keep_deciding, args=(client,)) for _ in range(3)]
        for worker in workers:
            worker.start()
        time.sleep(0.3)
        promote(engine, "m2", force_reason="hot reload test")
        deadline = time.monotonic() + 10
        while client.get("/healthz").json()["model_version"] != "m2":
            assert time.monotonic() < deadline, "the app did not swap to m2 within 10 s"
            time.sleep(0.02)
        swapped_at = len(answers)
        time.sleep(0.3)
        stop.set()
        for worker in workers:
            worker.join()
        health = client.get("/healthz").json()

    assert {status for status, _, _ in answers} == {201}  # no request failed during the swap
    versions = [version for _, version, _ in answers]
    assert "m1" in versions[:swapped_at] and len(versions) > swapped_at + 3
    assert set(versions[swapped_at + 3 :]) == {"m2"}  # at most one request per worker in flight
    with engine.connect() as conn:
        stored = dict(conn.execute(text("SELECT decision_id, model_version FROM decision")).all())
    assert all(stored[decision_id] == version for _, version, decision_id in answers)
    assert health["model_version"] == "m2" and health["status"] == "ok"
    assert health["policy"]["name"] == settings.exploration_policy().name
    assert health["database"] == url and health["arms"] == []
    engine.dispose()


def test_health_masks_the_database_password(small_catalog: ItemCatalog) -> None:
    service = DecisionService(
        scorer=PopularityAffinityScorer(small_catalog, model_version="x"),
        policy=EpsilonGreedySlate(epsilon=0.1),
    )
    settings = Settings(database_url="postgresql+psycopg://loop:s3cret@db:5432/log")
    info = serving_info(service, settings)
    assert "s3cret" not in info["database"] and info["database"].startswith("postgresql+psycopg")
    assert info["model_version"] == "x" and info["policy"]["params"]["epsilon"] == 0.1
