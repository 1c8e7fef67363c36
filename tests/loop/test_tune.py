"""``loopbreak tune search-weight``: one curve point per α, the argmax picked, on the simulator
and on a real log by OPE."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cli.main import main
from loop.sim_bridge import catalog_from_world
from loop.tune import SimTuneConfig, _log_world, tune_on_logs
from proplog.engine import init_db, make_engine
from sim import World, WorldConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_command_reports_one_point_per_alpha_and_picks_the_best(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["tune", "search-weight", "--alphas", "0,2,8", "--decisions", "200", "--heldout",
            "80", "--items", "60", "--users", "30", "--seed", "3", "--json"]  # fmt: skip
    assert main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    result = json.loads(lines[-1])
    curve = result["curve"]
    assert [p["alpha"] for p in curve] == [0.0, 2.0, 8.0]
    qualities = [p["quality"] for p in curve]
    assert result["alpha"] == curve[int(np.argmax(qualities))]["alpha"]
    assert all(np.isfinite(q) and q > 0 for q in qualities)
    # The search plays are in every α's table, and α changes the model.
    assert all(p["search_rows"] > 0 for p in curve)
    assert len(set(qualities)) > 1
    # Every point lies between the references the truth gives: uniform slates and the oracle.
    assert all(
        result["references"]["uniform"] < q < result["references"]["oracle"] for q in qualities
    )
    assert "<- best" in "\n".join(lines[:-1])


def test_tuning_on_a_real_log_uses_held_out_ips(tmp_path: Path) -> None:
    world_config = WorldConfig(seed=5, n_items=60, n_users=30)
    config = SimTuneConfig(decisions=250, epsilon=1.0, world=world_config, alphas=(0.0, 1.0))
    world = World(world_config)
    engine = make_engine(f"sqlite:///{tmp_path / 'log.db'}")
    init_db(engine)
    try:
        assert _log_world(world, engine, config, np.random.default_rng(0)) > 0
        result = tune_on_logs(
            engine, catalog_from_world(World(world_config)), alphas=(0.0, 1.0, 4.0)
        )
    finally:
        engine.dispose()
    assert result.mode == "logs"
    assert [p.alpha for p in result.curve] == [0.0, 1.0, 4.0]
    assert result.alpha == max(result.curve, key=lambda p: p.quality).alpha
    for p in result.curve:
        assert p.lo is not None and p.hi is not None and p.lo <= p.quality <= p.hi
    assert result.details["train_decisions"] + result.details["heldout_decisions"] == 250


@pytest.mark.parametrize("alphas", ["", "a,1", "-1,2", "nan"])
def test_bad_alpha_grid_is_refused(alphas: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["tune", "search-weight", "--alphas", alphas])
    assert "--alphas" in capsys.readouterr().err
