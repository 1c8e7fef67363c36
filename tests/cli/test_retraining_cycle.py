"""The retraining cycle end to end, from the command line, in the simulated world: a served and
logged loop, a first version promoted, the next one retrained warm from it on a window with a
held-out tail, gated on that tail against production, promoted (by the gate, or forced with a
reason when the gate says not ready), and a running service that swaps to it by itself, so the
next decisions carry the new version."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest
from api_keys import authorize
from fastapi.testclient import TestClient
from sqlalchemy import text

from api.app import create_app
from api.settings import Settings
from cli.main import main
from proplog.engine import make_engine


def last_json(capsys: pytest.CaptureFixture[str]) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.mark.slow
def test_serve_retrain_warm_gate_promote_and_the_service_reloads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    demo = tmp_path / "demo"
    assert main(["demo", "--out", str(demo), "--rounds", "2", "--decisions", "400", "--items",
                 "100", "--users", "60", "--seed", "3", "--model", "fm"]) == 0  # fmt: skip
    database = f"sqlite:///{demo / 'demo.db'}"
    catalog = str(demo / "model.npz")
    retrain = ["retrain", "--db", database, "--model", "fm", "--catalog-from", catalog]
    # the first registered version, trained on the first round only, goes to production
    assert main([*retrain, "--out", str(tmp_path / "v1.npz"), "--version", "v1",
                 "--until", "2026-01-04T00:00:00", "--holdout-share", "0.2"]) == 0  # fmt: skip
    assert main(["models", "promote", "v1", "--database", database]) == 0
    # a running service, started on production, follows it from here on by itself
    settings = Settings(database_url=database, model_path=tmp_path / "none.npz",
                        reload_seconds=0.05, max_k=10)  # fmt: skip
    with TestClient(create_app(settings)) as client:
        authorize(client)
        assert client.get("/healthz").json()["model_version"] == "v1"
        # the next version starts from v1 and keeps the latest 30% of the log out of training
        assert main([*retrain, "--out", str(tmp_path / "v2.npz"), "--version", "v2",
                     "--warm-start", "v1", "--holdout-share", "0.3"]) == 0  # fmt: skip
        capsys.readouterr()
        assert main(["models", "show", "v2", "--database", database, "--json"]) == 0
        cut = last_json(capsys)["training_window"]["cut"]
        # the gate on the held-out tail, against production as logged, is stored either way
        code = main(["ope", "gate", "--database", database, "--candidate", "v2", "--since", cut,
                     "--json"])  # fmt: skip
        gate = last_json(capsys)
        assert gate["evaluation"]["window"]["first_decision"] >= cut
        if code == 0:
            assert main(["models", "promote", "v2", "--database", database]) == 0
        else:  # not ready: promotion is refused, and only a stated reason overrides it
            assert code == 1 and gate["decision"] == "not_ready"
            assert main(["models", "promote", "v2", "--database", database]) == 1
            reason = "the gate is not ready on 30% of two rounds; promoting to test the cycle"
            promote = ["models", "promote", "v2", "--database", database, "--force", reason]
            assert main(promote) == 0
        capsys.readouterr()
        assert main(["models", "list", "--database", database, "--json"]) == 0
        listed = last_json(capsys)
        production = [v["version"] for v in listed["versions"] if v["production"]]
        assert production == ["v2"]
        deadline = time.monotonic() + 30
        while client.get("/healthz").json()["model_version"] != "v2":
            assert time.monotonic() < deadline, "the service did not reload v2 within 30 s"
            time.sleep(0.05)
        decision_id = str(uuid.uuid4())
        body = {"user_id": "u1", "surface": "home", "k": 5, "decision_id": decision_id}
        response = client.post("/v1/decisions", json=body)
        assert response.status_code == 201 and response.json()["model_version"] == "v2"
    engine = make_engine(database)
    with engine.connect() as conn:
        stored = conn.execute(
            text("SELECT model_version FROM decision WHERE decision_id = :d"), {"d": decision_id}
        ).scalar_one()
    engine.dispose()
    assert stored == "v2"
