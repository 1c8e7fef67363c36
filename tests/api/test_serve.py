"""``loopbreak serve`` for real: a uvicorn process on loopback, a decision, an event, and the
decision found in the database named by LOOPBREAK_DATABASE_URL; the requests send a key made
with ``loopbreak keys create``, and a request without one is refused."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import httpx
from api_keys import bearer
from served import loopbreak_script, serve_env, start_serve
from sqlalchemy import text

from fm_core import ItemCatalog, PopularityAffinityScorer
from proplog.engine import make_engine


def test_serve_answers_decisions_and_records_them(
    tmp_path: Path, small_catalog: ItemCatalog
) -> None:
    model = PopularityAffinityScorer(small_catalog, model_version="served").save(
        tmp_path / "model.npz"
    )
    database = f"sqlite:///{tmp_path / 'served.db'}"
    script = loopbreak_script()
    env = serve_env(database)
    made = subprocess.run(
        [str(script), "keys", "create", "--name", "serve test", "--scope", "decide", "--scope",
         "events"], env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    token = made.stdout.strip()
    headers = bearer(token)
    served = start_serve(model, env, tmp_path / "serve.log")
    base = served.base
    try:
        decision_id = str(uuid.uuid4())
        body = {"user_id": "u1", "surface": "billboard", "k": 1, "decision_id": decision_id}
        assert httpx.post(f"{base}/v1/decisions", json=body).status_code == 401
        decided = httpx.post(f"{base}/v1/decisions", json=body, headers=headers)
        assert decided.status_code == 201, decided.text
        item = decided.json()["slate"][0]["item_id"]
        played = httpx.post(
            f"{base}/v1/events",
            json={"event_id": "p1", "user_id": "u1", "item_id": item, "kind": "play",
                  "source": "rec", "decision_id": decision_id, "position": 0, "value": 60},
            headers=headers,
        )  # fmt: skip
        assert played.status_code == 201, played.text
    finally:
        served.stop()
    log = served.output_text()
    assert token not in log and token not in made.stderr
    engine = make_engine(database)
    with engine.connect() as conn:
        stored = conn.execute(
            text("SELECT model_version FROM decision WHERE decision_id = :d"), {"d": decision_id}
        ).scalar_one()
        events = conn.execute(text("SELECT COUNT(*) FROM event")).scalar_one()
    engine.dispose()
    assert stored == "served"
    assert events == 1
