"""The gate before A/B: the paired lift equals the difference of the two estimates and is
narrower than unpaired intervals; on the simulated world a clearly better candidate is ready,
a worse one is not, and the decision with its reasons is stored in ``ope_report``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sim_decisions import fitted_and_reversed, uniform_log
from sqlmodel import Session, select

from cli.main import main
from ope import IPS, SNIPS, OpeBatch, OpeInputError, estimate_all
from ope.gate import GateThresholds, gate
from ope.paired import paired_lift
from proplog.engine import init_db, make_engine
from proplog.schema import OpeReport
from sim import World, WorldConfig


def paired_batches(n: int = 3000, seed: int = 0) -> tuple[OpeBatch, OpeBatch]:
    rng = np.random.default_rng(seed)
    pscore = rng.uniform(0.2, 0.8, n)
    reward = (rng.random(n) < 0.3).astype(float)
    base = np.clip(pscore * rng.uniform(0.7, 1.3, n), 0, 1)  # mean weight about 1
    candidate = np.clip(base * rng.uniform(0.9, 1.1, n), 0, 1)
    q_hat = rng.uniform(0.2, 0.4, n)
    common = {"reward": reward, "pscore": pscore, "q_hat": q_hat}
    return (
        OpeBatch.from_arrays(target_pscore=candidate, v_hat=q_hat * candidate, **common),
        OpeBatch.from_arrays(target_pscore=base, v_hat=q_hat * base, **common),
    )


@pytest.mark.parametrize("estimator", [IPS(), SNIPS()])
def test_paired_lift_is_the_difference_and_narrower_than_unpaired(estimator: IPS) -> None:
    candidate, baseline = paired_batches()
    lift = paired_lift(estimator, candidate, baseline)
    c, b = estimator.estimate(candidate), estimator.estimate(baseline)
    assert lift.value == pytest.approx(c.value - b.value, rel=1e-12)
    unpaired = math.hypot(c.hi - c.value, b.hi - b.value)
    assert lift.hi - lift.value < 0.5 * unpaired  # the shared rows cancel most of the noise


def test_ipw_lift_interval_is_the_mean_of_row_differences() -> None:
    candidate, baseline = paired_batches()
    diff = (candidate.weight - baseline.weight) * candidate.reward
    se = diff.std(ddof=1) / math.sqrt(diff.size)
    lift = paired_lift(IPS(), candidate, baseline)
    assert lift.hi - lift.value == pytest.approx(1.959963984540054 * se, rel=1e-9)


def test_lift_refuses_batches_of_different_rows() -> None:
    candidate, _ = paired_batches(seed=0)
    _, other = paired_batches(seed=1)
    with pytest.raises(OpeInputError, match=r"reward must be the same .* at row"):
        paired_lift(IPS(), candidate, other)


def test_gate_rests_on_the_primary_lift_and_fails_each_check_with_its_reason() -> None:
    candidate, baseline = paired_batches()
    decision = gate(candidate, baseline, thresholds=GateThresholds(margin=-1.0))
    assert decision.lift.estimator == "primary" and decision.ready
    assert decision.primary is not None and decision.primary.reliable
    assert (decision.lift.lo, decision.lift.hi) == (decision.primary.lo, decision.primary.hi)
    strict = gate(candidate, baseline, thresholds=GateThresholds(margin=1.0, min_ess=1e6))
    assert strict.decision == "not_ready"
    assert strict.primary is not None and not strict.primary.reliable
    failed = [r for r in strict.reasons if r.endswith("FAIL")]
    assert any(r.startswith("primary lift lower bound") for r in failed)
    assert any(r.startswith("candidate ess") for r in failed)
    dr = gate(candidate, baseline, thresholds=GateThresholds(margin=-1.0), estimator="dr")
    assert dr.lift.estimator == "dr" and dr.primary is None
    assert dr.lift.value == pytest.approx(
        estimate_all(candidate)["dr"].value - estimate_all(baseline)["dr"].value
    )


def test_gate_without_a_reward_model_falls_back_to_snips() -> None:
    candidate, baseline = paired_batches()
    bare = [
        OpeBatch.from_arrays(reward=b.reward, pscore=b.pscore, target_pscore=b.target_pscore)
        for b in (candidate, baseline)
    ]
    decision = gate(*bare, thresholds=GateThresholds(margin=-1.0))
    assert decision.lift.estimator == "snipw" and decision.primary is None
    with pytest.raises(ValueError, match="estimator must be primary or one of"):
        gate(*bare, estimator="dr")


@pytest.fixture(scope="module")
def world_log(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, Path]:
    out = tmp_path_factory.mktemp("gate")
    url = f"sqlite:///{out / 'log.db'}"
    engine = make_engine(url)
    init_db(engine)
    world = World(WorldConfig(seed=3, n_items=80, n_users=150))
    uniform_log(world, engine, n=1200, k=5, seed=0)
    fitted, reversed_model = fitted_and_reversed(world, engine, out)
    engine.dispose()
    return url, fitted, reversed_model


def stored_reports(url: str) -> list[OpeReport]:
    engine = make_engine(url)
    with Session(engine) as session:
        rows = list(session.exec(select(OpeReport).order_by(OpeReport.id)).all())  # type: ignore[arg-type]
    engine.dispose()
    return rows


def test_better_candidate_is_ready_and_worse_is_not_with_reasons_stored(
    world_log: tuple[str, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    url, fitted, reversed_model = world_log
    before = len(stored_reports(url))
    argv = ["ope", "gate", "--database", url, "--json", "--pool", "20"]
    code = main([*argv, "--candidate", str(fitted), "--baseline", str(reversed_model)])
    better = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0 and better["decision"] == "ready"
    assert better["lift"]["lo"] > 0.0
    code = main([*argv, "--candidate", str(reversed_model), "--baseline", str(fitted)])
    out = capsys.readouterr().out
    assert code == 1 and "NOT READY for A/B" in out
    rows = stored_reports(url)[before:]
    assert [(r.candidate, r.baseline, r.decision) for r in rows] == [
        ("fitted", "reversed", "ready"),
        ("reversed", "fitted", "not_ready"),
    ]
    worse = rows[1]
    assert any(
        r.startswith("primary lift lower bound") and r.endswith("FAIL") for r in worse.reasons
    )
    assert worse.payload["lift"]["hi"] < 0.0
    checks = {c["name"]: c for c in worse.payload["checks"]}
    assert checks["candidate unsupported share"]["value"] == 0.0  # uniform logging covers all
    assert worse.payload["evaluation"]["lift"]["value"] == worse.payload["lift"]["value"]
    assert {"value", "threshold", "passed", "rule"} <= set(checks["candidate ess"])


def test_a_clearly_better_candidate_is_ready_against_production_as_logged(
    world_log: tuple[str, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    url, fitted, _ = world_log
    code = main(["ope", "gate", "--database", url, "--json", "--pool", "20",
                 "--candidate", str(fitted)])  # fmt: skip
    payload = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0 and payload["decision"] == "ready" and payload["baseline"] == "production"
    # the walk stops where the outcome model (blind to the fitted model's skill) disagrees
    assert payload["primary"]["estimator"] != "dm" and payload["lift"]["lo"] > 0.3
    assert payload["evaluation"]["baseline"]["estimates"]["ipw"]["mean_weight"] == 1.0


def test_file_inputs_gate_and_bad_rows_name_column_and_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    candidate, baseline = paired_batches()
    frames = {}
    for name, batch in (("candidate", candidate), ("baseline", baseline)):
        frame = pd.DataFrame(
            {"reward": batch.reward, "pscore": batch.pscore, "target_pscore": batch.target_pscore,
             "q_hat": batch.q_hat, "v_hat": batch.v_hat}
        )  # fmt: skip
        frames[name] = frame
        frame.to_csv(tmp_path / f"{name}.csv", index=False)
    url = f"sqlite:///{tmp_path / 'gate.db'}"
    argv = ["ope", "gate", "--database", url, "--candidate", "c1", "--baseline", "b1",
            "--input", str(tmp_path / "candidate.csv"),
            "--baseline-input", str(tmp_path / "baseline.csv")]  # fmt: skip
    assert main([*argv, "--margin", "-1"]) == 0
    capsys.readouterr()
    broken = frames["baseline"].copy()
    broken.loc[7, "pscore"] = 0.0
    broken.to_csv(tmp_path / "baseline.csv", index=False)
    assert main(argv) == 2
    assert "pscore must be in (0, 1]; got 0.0 at row 7" in capsys.readouterr().err
