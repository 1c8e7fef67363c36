"""The A/B workflow in the simulated world, through the real decision service, against truth:
a short sequence of experiments (gate, plan, daily analyses stored, the agreement tracker), the
SRM check's rates over repeated assignments by the service's hash, and the confidence sequence
under daily peeking of repeated A/A experiments. The default runs are small; the ``slow`` ones
are the sizes the README reports."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from cli.main import main
from loop.ab_sim import AbSimulationConfig, run_sequence
from loop.ab_sim_guards import GuardConfig, peeking, srm_served
from loop.ab_sim_repeated import null_peeking, srm_rate
from proplog.ab_records import ab_analyses
from proplog.engine import init_db, make_engine
from proplog.frames import decision_frame


@pytest.fixture(scope="module")
def sequence(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    out = tmp_path_factory.mktemp("ab_sim")
    url = f"sqlite:///{out / 'log.db'}"
    engine = make_engine(url)
    init_db(engine)
    config = AbSimulationConfig(seed=5, n_users=150, pre_decisions=600, experiments=3,
                                decisions=300, days=3)  # fmt: skip
    experiments = run_sequence(engine, config, out)
    engine.dispose()
    return {"url": url, "experiments": experiments, "config": config}


def test_sequence_logs_every_arm_and_stores_a_look_a_day(sequence: dict) -> None:
    engine = make_engine(sequence["url"])
    decisions = decision_frame(session_or_engine=engine)
    stored = ab_analyses(engine)
    engine.dispose()
    config, experiments = sequence["config"], sequence["experiments"]
    in_tests = decisions[decisions["arm"].notna()]
    assert len(in_tests) == config.experiments * config.decisions
    for one in experiments:
        mine = in_tests[in_tests["arm"].str.startswith(f"{one.name}:")]
        treated = mine[mine["arm"] == f"{one.name}:treatment"]
        assert set(treated["policy_name"]) == {one.policy}
        assert set(treated["model_version"]) == {f"{one.name}-model"}
    assert len(stored) == config.experiments * config.days
    assert stored.groupby("experiment").size().eq(config.days).all()


def test_sequence_intervals_hold_the_truth_and_the_sequence_never_widens(sequence: dict) -> None:
    for one in sequence["experiments"]:
        last = one.analysis.arms["treatment"]
        truth = one.true_difference
        assert last.sequential.running_lo <= truth <= last.sequential.running_hi
        assert last.fixed.lo - 0.05 <= truth <= last.fixed.hi + 0.05
        highs = [look["sequential"]["running_hi"] for look in one.looks]
        lows = [look["sequential"]["running_lo"] for look in one.looks]
        assert highs == sorted(highs, reverse=True) and lows == sorted(lows)
        assert (last.sequential.hi - last.sequential.lo) > (last.fixed.hi - last.fixed.lo)
        assert not one.analysis.srm.flagged
        assert last.prediction is not None  # the gate ran before the experiment
        assert last.cuped is not None


def test_agreement_command_tabulates_the_sequence(
    sequence: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report"
    code = main(["ab", "agreement", "--database", sequence["url"], "--out", str(out), "--json"])
    assert code == 0
    document = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    rows = pd.DataFrame(document["rows"])
    assert len(rows) == len(sequence["experiments"])
    by_name = rows.set_index("experiment")
    for one in sequence["experiments"]:
        last = one.analysis.arms["treatment"]
        assert by_name.loc[one.name, "observed"] == pytest.approx(last.fixed.value)
        assert by_name.loc[one.name, "predicted"] == pytest.approx(last.prediction["lift"]["value"])
    overlap = ((rows["predicted_lo"] <= rows["observed_hi"])
               & (rows["observed_lo"] <= rows["predicted_hi"])).mean()  # fmt: skip
    assert document["summary"]["overlap_share"] == pytest.approx(overlap)
    assert "<img" in (out / "agreement.html").read_text()


def test_srm_rates_by_the_service_hash() -> None:
    users = np.array([f"member-{i}" for i in range(2000)])
    planned = {"control": 0.5, "treatment": 0.5}
    alarms = srm_rate(users, planned=planned, served=planned, runs=200, alpha=0.05)
    low, high = stats.binom.ppf([0.0005, 0.9995], 200, 0.05) / 200
    assert low <= alarms.rate <= high
    found = srm_rate(users, planned=planned, served={"control": 0.55, "treatment": 0.45},
                     runs=50, alpha=0.001)  # fmt: skip
    assert found.rate > 0.5  # χ² ≈ 20 expected at 2,000 users


def test_confidence_sequence_keeps_its_level_under_daily_peeking() -> None:
    rng = np.random.default_rng(11)
    users = np.array([f"u{i}" for i in range(400)])
    rate = rng.gamma(2.0, 0.2, size=users.size)
    n = rng.integers(1, 12, size=users.size)
    who = np.repeat(np.arange(users.size), n)
    day = rng.integers(0, 10, size=who.size)
    rows = pd.DataFrame({
        "user_id": users[who], "reward": rng.poisson(rate[who]),
        "created_at": pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(day, unit="D"),
    })  # fmt: skip
    covariates = pd.DataFrame({"user_id": users, "pre_plays": rng.poisson(rate * 10),
                               "pre_decisions": np.full(users.size, 10)})  # fmt: skip
    ends = [pd.Timestamp("2026-01-01", tz="UTC") + pd.Timedelta(days=d + 1) for d in range(10)]
    variance = rows["reward"].var() / rows.groupby("user_id").size().mean() * 4 / users.size
    from ope.ab_sequential import tau2_for_horizon

    result = null_peeking(rows, covariates, look_ends=ends, runs=200,
                          tau2=tau2_for_horizon(variance, alpha=0.05))  # fmt: skip
    assert result.sequential_any.rate <= 0.05 + 0.03
    assert result.fixed_any.rate > 0.08  # peeking at the fixed interval inflates its errors
    assert result.fixed_any.events >= result.fixed_last.events
    assert result.cuped_width_ratio < 1.0


@pytest.mark.slow
def test_guards_at_the_reported_size(tmp_path: Path) -> None:
    config = GuardConfig(seed=0, n_users=3000, decisions=6000, runs=1000)
    engine = make_engine(f"sqlite:///{tmp_path / 'srm.db'}")
    init_db(engine)
    served = srm_served(engine, config, tmp_path)
    assert served.broken.flagged and not served.correct.flagged
    assert served.false_alarms.rate < 0.005 and served.detections.rate > 0.9
    assert served.false_alarms_at_05.lo <= 0.05 <= served.false_alarms_at_05.hi
    engine = make_engine(f"sqlite:///{tmp_path / 'aa.db'}")
    init_db(engine)
    smaller = GuardConfig(seed=0, n_users=1000, decisions=2500, runs=500)  # the A/A's cost
    result, _ = peeking(engine, smaller)
    assert result.sequential_any.hi <= 0.05 or result.sequential_any.rate <= 0.05
    assert result.fixed_any.lo > 0.05  # what the confidence sequence protects against
