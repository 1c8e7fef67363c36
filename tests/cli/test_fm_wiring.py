"""The foundation model wired into the loop's commands: the demo, retraining and serving with
``--model fm``, end to end on a small simulated world."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import text

from api.deps import load_scorer
from api.settings import Settings
from cli.main import main
from fm_core.fm_scorer import FMRankerScorer
from proplog.engine import make_engine


@pytest.mark.slow
def test_demo_retrain_and_serve_with_the_fm_scorer(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    argv = ["demo", "--out", str(out), "--rounds", "2", "--decisions", "300", "--items", "100",
            "--users", "60", "--seed", "2", "--model", "fm"]  # fmt: skip
    assert main(argv) == 0
    assert isinstance(load_scorer(Settings(model_path=out / "model.npz")), FMRankerScorer)
    database = f"sqlite:///{out / 'demo.db'}"
    new_model = tmp_path / "fm.npz"
    argv = ["retrain", "--db", database, "--out", str(new_model), "--model", "fm",
            "--catalog-from", str(out / "model.npz"), "--version", "fm-next"]  # fmt: skip
    assert main(argv) == 0
    served = load_scorer(Settings(model_path=new_model))
    assert isinstance(served, FMRankerScorer) and served.model_version == "fm-next"
    engine = make_engine(database)
    with engine.connect() as conn:
        versions = set(conn.execute(text("SELECT DISTINCT model_version FROM decision")).scalars())
        kind, metrics = conn.execute(
            text("SELECT kind, metrics FROM model_version WHERE version = 'fm-next'")
        ).one()
    engine.dispose()
    assert versions == {"untrained", "fm-r1"}
    assert kind == "fm_ranker"
    metrics = metrics if isinstance(metrics, dict) else json.loads(metrics)
    assert metrics["decisions"] == 480 and 0.0 <= metrics["ece"] < 0.05  # 20% held out
    assert metrics["calibration"] in ("temperature", "isotonic")
    assert sum(b["count"] for b in metrics["reliability"]) == metrics["holdout_pairs"]
    # the next version, warm-started from this one: its item embeddings aligned to fm-next's
    warm = tmp_path / "fm-warm.npz"
    argv = ["retrain", "--db", database, "--out", str(warm), "--model", "fm",
            "--catalog-from", str(out / "model.npz"), "--version", "fm-warm",
            "--warm-start", "fm-next"]  # fmt: skip
    assert main(argv) == 0
    engine = make_engine(database)
    with engine.connect() as conn:
        metrics = conn.execute(
            text("SELECT metrics FROM model_version WHERE version = 'fm-warm'")
        ).scalar_one()
    engine.dispose()
    metrics = metrics if isinstance(metrics, dict) else json.loads(metrics)
    alignment = metrics["alignment"]
    assert alignment["aligned_to"] == "fm-next" and alignment["shared_items"] == 100
    assert alignment["residual"] < alignment["residual_unaligned"]
    exported = pd.read_parquet(metrics["embeddings_path"])
    assert len(exported) == 100 and len(exported["vector"][0]) > 0
    bad = [*argv[:-2], "--warm-start", "nobody", "--version", "fm-bad"]
    assert main(bad) == 2
