"""``loopbreak ab plan``, ``analyze``, ``agreement`` and ``simulate`` refuse bad input with one
line naming the option and what it must be (exit 2), and ``plan`` stores what ``analyze`` uses."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from cli.main import main
from loop.ab_sim_serve import serve_world, uniform_service
from proplog.ab_records import latest_ab_plan
from proplog.engine import init_db, make_engine
from sim import World, WorldConfig


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A log with a pre-period of uniform-random decisions over 5 days."""
    url = f"sqlite:///{tmp_path_factory.mktemp('ab_cli') / 'log.db'}"
    engine = make_engine(url)
    init_db(engine)
    world = World(WorldConfig(seed=2, n_items=50, n_users=80))
    serve_world(world, uniform_service(world), engine, n=300, k=4, start=0.0, end=5.0,
                rng=np.random.default_rng(0))  # fmt: skip
    engine.dispose()
    return url


def test_plan_prints_and_stores_the_mde_and_tau2(
    logged: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["ab", "plan", "--experiment", "p1", "--database", logged, "--days", "5"]
    assert main([*args, "--shares", "control=0.6,new=0.4", "--json"]) == 0
    document = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    engine = make_engine(logged)
    stored = latest_ab_plan(engine, "p1")
    engine.dispose()
    assert stored is not None and stored["shares"] == {"control": 0.6, "new": 0.4}
    assert stored["mde"] == pytest.approx(document["plan"]["mde"]) and stored["tau2"] > 0
    assert document["plan"]["users"] == document["baseline"]["users"]
    assert main([*args, "--shares", "control=0.6,new=0.4", "--mde", "0.05", "--json"]) == 0
    needed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["plan"]
    assert needed["mde"] == 0.05 and needed["users"] > 0


def test_plan_reads_the_shares_from_the_services_experiment_settings(
    logged: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "experiment.json"
    config.write_text(json.dumps({"name": "p2", "arms": [
        {"name": "control", "share": 0.7, "model_path": "a.npz"},
        {"name": "new", "share": 0.3, "model_path": "b.npz", "policy": "greedy"}]}))  # fmt: skip
    args = ["ab", "plan", "--experiment", "p2", "--database", logged, "--days", "5", "--json"]
    assert main([*args, "--config", str(config)]) == 0
    document = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert document["shares"] == {"control": 0.7, "new": 0.3} and document["treatment"] == "new"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "give exactly one of --shares and --config"),
        (["--shares", "control:0.5,new:0.5"], "--shares must look like control=0.5,new=0.5"),
        (["--shares", "control=0.5,new=0.4"], "shares must add up to 1; got 0.9"),
        (["--shares", "a=0.5,b=0.5"], "control arm 'control' is not among the shares"),
        (["--shares", "control=0.5,new=0.5", "--days", "0"], "days must be > 0"),
        (["--shares", "control=0.5,new=0.5", "--power", "1"], r"power must be in \(0, 1\)"),
        (["--shares", "control=0.5,new=0.5", "--mde", "-1"], "mde must be a positive number"),
        (["--shares", "control=0.5,new=0.5", "--until", "soon"], "--until must be an ISO date"),
        (["--shares", "control=0.5,new=0.5", "--until", "2020-01-01"], "holds no decision in"),
        (["--config", '{"name": "x"}'], "--config is not an experiment's settings"),
    ],
)
def test_plan_refuses_bad_input(
    logged: str, extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["ab", "plan", "--experiment", "bad", "--database", logged, *extra])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert re.search(message, err), err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["analyze", "--experiment", "nope"], "no decision in the log has an arm of experiment"),
        (["analyze", "--experiment", "x", "--until", "x"], "--until must be an ISO date"),
        (["agreement"], "no stored A/B analysis to summarize"),
    ],
)
def test_analyze_and_agreement_refuse_bad_input(
    logged: str, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ab", *args, "--database", logged]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("option", ["--experiments", "--decisions", "--days", "--runs"])
def test_simulate_refuses_sizes_below_one(
    option: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ab", "simulate", option, "0", "--out", str(tmp_path)]) == 2
    assert f"{option} must be >= 1; got 0" in capsys.readouterr().err
