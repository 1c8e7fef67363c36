"""The main job end to end at small size: the loop turns, learns, and leaves a consistent log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import text

from cli.main import main
from proplog.engine import make_engine


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    argv = ["demo", "--out", str(out), "--rounds", "3", "--decisions", "300", "--items", "150",
            "--users", "80", "--seed", "1"]  # fmt: skip
    assert main(argv) == 0
    return out


def test_demo_writes_the_per_round_json(demo_out: Path) -> None:
    document = json.loads((demo_out / "demo.json").read_text())
    rounds = document["rounds"]
    assert [r["round"] for r in rounds] == [0, 1, 2]
    for r in rounds:
        assert {"round", "true_reward", "ips", "snips", "coverage"} <= set(r)
        assert 0.0 < r["coverage"] <= 1.0
        assert 0.0 < r["true_reward"] < r["oracle_reward"]
    assert rounds[0]["ips"] is None  # the warm-up round has no earlier logs to evaluate on
    assert all(r["ips"] is not None and r["snips"] is not None for r in rounds[1:])


def test_learned_policy_beats_the_uniform_warm_up(demo_out: Path) -> None:
    rounds = json.loads((demo_out / "demo.json").read_text())["rounds"]
    assert min(r["true_reward"] for r in rounds[1:]) > 1.5 * rounds[0]["true_reward"]


def test_demo_log_is_complete_and_consistent(demo_out: Path) -> None:
    engine = make_engine(f"sqlite:///{demo_out / 'demo.db'}")
    with engine.connect() as conn:
        decisions = conn.execute(text("SELECT COUNT(*) FROM decision")).scalar_one()
        slate_items = conn.execute(text("SELECT COUNT(*) FROM slate_item")).scalar_one()
        orphans = conn.execute(
            text(
                "SELECT COUNT(*) FROM event e LEFT JOIN slate_item s ON "
                "s.decision_id = e.decision_id AND s.position = e.position "
                "WHERE e.source = 'rec' AND s.item_id IS NOT e.item_id"
            )
        ).scalar_one()
        sources = dict(
            conn.execute(text("SELECT source, COUNT(*) FROM event GROUP BY source")).all()
        )
        models = conn.execute(text("SELECT DISTINCT model_version FROM decision")).scalars()
        model_versions = set(models)
    engine.dispose()
    assert decisions == 900
    assert slate_items == 900 * 10
    assert orphans == 0
    assert sources.get("rec", 0) > 0 and sources.get("search", 0) > 0
    assert model_versions == {"untrained", "baseline-r1", "baseline-r2"}
    assert (demo_out / "model.npz").exists()
