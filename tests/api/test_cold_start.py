"""The cold start: an app on a log with only a catalog (no model file, no production version)
serves the unfitted scorer over that catalog as model version ``cold-start`` with a uniform
policy (every candidate equally likely at every position), logs each decision like any other,
and follows the first promoted version by hot reload; with no catalog either it does not start,
saying what to do."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from api_keys import authorize
from catalog_files import small_frame
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlmodel import Session

from api.app import create_app
from api.settings import Settings
from fm_core import PopularityAffinityScorer
from loop.catalog import catalog_from_log
from loop.models import promote
from proplog.catalog import load_catalog_rows
from proplog.engine import init_db, make_engine
from proplog.registry import record_model_version


def _decide(client: TestClient, k: int = 2) -> dict[str, object]:
    body = {"user_id": "u1", "surface": "home", "k": k, "decision_id": str(uuid.uuid4())}
    response = client.post("/v1/decisions", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def test_a_catalog_alone_starts_cold_and_a_promotion_ends_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    engine = make_engine(url)
    init_db(engine)
    with Session(engine) as session:
        load_catalog_rows(session, small_frame())  # three titles, all released
    settings = Settings(
        database_url=url, model_path=tmp_path / "none.npz", reload_seconds=0.05, max_k=20
    )
    with TestClient(create_app(settings)) as client:
        authorize(client)
        health = client.get("/healthz").json()
        assert health["model_version"] == "cold-start"
        assert health["policy"]["params"]["epsilon"] == 1.0
        assert health["policy"]["params"]["pool"] is None
        cold = [_decide(client) for _ in range(3)]
        for answer in cold:
            assert answer["model_version"] == "cold-start"
            slate = answer["slate"]
            assert [s["propensity"] for s in slate] == pytest.approx([1 / 3, 1 / 3])
            assert [s["cond_propensity"] for s in slate] == pytest.approx([1 / 3, 1 / 2])
            assert [s["prefix_propensity"] for s in slate] == pytest.approx([1 / 3, 1 / 6])

        catalog = catalog_from_log(engine)
        assert catalog is not None
        path = PopularityAffinityScorer(catalog, model_version="v1").save(tmp_path / "v1.npz")
        with Session(engine) as session:
            record_model_version(
                session=session, version="v1", kind="baseline", params={}, metrics={},
                path=str(path),
            )  # fmt: skip
        promote(engine, "v1")
        deadline = time.monotonic() + 10
        while client.get("/healthz").json()["model_version"] != "v1":
            assert time.monotonic() < deadline, "the app did not leave the cold start in 10 s"
            time.sleep(0.02)
        warm = _decide(client)
        health = client.get("/healthz").json()
    assert warm["model_version"] == "v1"
    assert health["policy"]["name"] == settings.exploration_policy().name
    assert health["policy"]["params"]["epsilon"] == settings.epsilon  # the settings' policy again
    with engine.connect() as conn:
        stored = dict(conn.execute(text("SELECT decision_id, model_version FROM decision")).all())
    assert {stored[str(a["decision_id"])] for a in cold} == {"cold-start"}  # logged like any other
    assert stored[str(warm["decision_id"])] == "v1"
    engine.dispose()


def test_no_model_and_no_catalog_does_not_start(tmp_path: Path) -> None:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'log.db'}", model_path=tmp_path / "none.npz"
    )
    refused = pytest.raises(FileNotFoundError, match="loopbreak catalog load FILE")
    with refused, TestClient(create_app(settings)):
        pass
