"""A/B tests: deterministic arm assignment near the configured shares, the service logging each
decision's arm, and a simulated A/B whose interval contains the world's true difference, stored
beside the OPE prediction made for the same candidate."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError
from scipy import stats
from sim_decisions import fitted_and_reversed, serve, uniform_log
from sqlmodel import Session, select

from cli.main import main
from loop.context import RequestContext, history_from_events
from loop.experiment import (
    ExperimentSettings,
    assign_arm,
    bucket_bounds,
    load_experiment,
    user_bucket,
)
from loop.service import DecisionService
from ope.ab import analyze
from proplog.engine import init_db, make_engine
from proplog.frames import decision_frame
from proplog.schema import DecisionCreate, OpeReport
from proplog.store import user_history
from sim import Request, World, WorldConfig


def three_arms(tmp_path: Path) -> ExperimentSettings:
    return ExperimentSettings(
        name="home-ranker",
        arms=[
            {"name": "control", "share": 0.5, "model_path": tmp_path / "a.npz"},
            {"name": "fm", "share": 0.3, "model_path": tmp_path / "b.npz"},
            {"name": "fm-wide", "share": 0.2, "model_path": tmp_path / "c.npz", "pool": 60},
        ],
    )


def test_assignment_is_near_the_shares_by_chi_square(tmp_path: Path) -> None:
    experiment = three_arms(tmp_path)
    users = [f"u{i}" for i in range(30_000)]
    arms = pd.Series([assign_arm(experiment, u).name for u in users]).value_counts()
    observed = [arms["control"], arms["fm"], arms["fm-wide"]]
    expected = [0.5 * len(users), 0.3 * len(users), 0.2 * len(users)]
    assert stats.chisquare(observed, expected).pvalue > 0.001
    assert bucket_bounds(experiment) == [0, 5000, 8000, 10_000]


def test_assignment_is_the_same_in_another_process_and_per_experiment(tmp_path: Path) -> None:
    experiment = three_arms(tmp_path)
    users = [f"user-{i}" for i in range(200)]
    here = [user_bucket(experiment.name, u) for u in users]
    code = (
        "import json, sys; from loop.experiment import user_bucket; "
        "print(json.dumps([user_bucket('home-ranker', u) for u in json.loads(sys.argv[1])]))"
    )
    other = subprocess.run(
        [sys.executable, "-c", code, json.dumps(users)], capture_output=True, text=True, check=True
    )
    assert json.loads(other.stdout) == here
    assert here != [user_bucket("another-test", u) for u in users]  # experiments reshuffle


@pytest.mark.parametrize(
    ("arms", "message"),
    [
        ([("a", 0.5), ("b", 0.4)], "arm shares must add up to 1; got 0.9"),
        ([("a", 0.5), ("a", 0.5)], "arm names must be unique; got a twice"),
        ([("a", 1.0)], "at least 2 items"),
        ([("a", 0.99999), ("b", 0.00001)], "arm share too small .*: b gets none"),
    ],
)
def test_bad_experiments_are_refused_with_the_reason(
    arms: list[tuple[str, float]], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        ExperimentSettings(
            name="x", arms=[{"name": n, "share": s, "model_path": "m.npz"} for n, s in arms]
        )


def test_analysis_difference_and_clustered_interval_on_known_rows() -> None:
    rows = pd.DataFrame(
        {
            "arm": ["control"] * 4 + ["new"] * 4,
            "user_id": ["a", "a", "b", "c", "d", "d", "e", "f"],
            "reward": [0.0, 1.0, 1.0, 0.0, 1.0, 2.0, 1.0, 2.0],
        }
    )
    result = analyze(rows, control="control")
    welch = result.differences["new"]["welch"]
    assert welch.value == pytest.approx(1.5 - 0.5)
    expected = stats.ttest_ind([1.0, 2.0, 1.0, 2.0], [0.0, 1.0, 1.0, 0.0], equal_var=False)
    assert welch.df == pytest.approx(expected.df)
    half = welch.hi - welch.value
    assert half == pytest.approx(stats.t.ppf(0.975, expected.df) * welch.se)
    assert result.arms["new"].users == 3 and result.arms["control"].decisions == 4


@pytest.fixture(scope="module")
def ab_world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    out = tmp_path_factory.mktemp("ab")
    url = f"sqlite:///{out / 'log.db'}"
    engine = make_engine(url)
    init_db(engine)
    world = World(WorldConfig(seed=4, n_items=80, n_users=200))
    uniform_log(world, engine, n=800, k=5, seed=2)
    fitted, reversed_model = fitted_and_reversed(world, engine, out)
    # The OPE prediction made beforehand for the candidate, stored by the gate.
    gate = ["ope", "gate", "--database", url, "--pool", "20", "--min-ess", "50"]
    assert main([*gate, "--candidate", str(fitted), "--baseline", str(reversed_model)]) == 0
    settings = ExperimentSettings(
        name="ranker-test",
        arms=[
            {"name": "control", "share": 0.5, "model_path": reversed_model, "pool": 20},
            {"name": "fitted", "share": 0.5, "model_path": fitted, "pool": 20},
        ],
    )
    plan = ["ab", "plan", "--experiment", "ranker-test", "--database", url, "--days", "5"]
    assert main([*plan, "--shares", "control=0.5,fitted=0.5"]) == 0
    experiment = load_experiment(settings)
    control = experiment.control
    service = DecisionService(scorer=control.scorer, policy=control.policy, experiment=experiment)
    true_gap: list[float] = []

    def both_arms_truth(session: Session, request: Request, record: DecisionCreate) -> None:
        history = history_from_events(
            user_history(session=session, user_id=record.user_id, before=record.created_at)
        )
        scoring = RequestContext.of_logged(record).score_request(
            when=record.created_at,
            history=history,
        )
        candidates = np.asarray(record.candidate_ids, dtype=np.int64)
        values = {}
        for name, arm in experiment.arms.items():
            scores = arm.scorer.score([scoring], [candidates])[0]
            values[name] = world.policy_value(
                request, candidates, arm.policy.marginals(scores, len(record.slate))
            )
        true_gap.append(values["fitted"] - values["control"])

    rng = np.random.default_rng(9)
    serve(world, service, engine, n=600, k=5, start=5.0, end=10.0, rng=rng,
          on_decision=both_arms_truth)  # fmt: skip
    engine.dispose()
    return {"url": url, "true_difference": float(np.mean(true_gap)), "settings": settings}


def test_each_decision_logs_the_arm_its_user_is_assigned(ab_world: dict[str, object]) -> None:
    engine = make_engine(str(ab_world["url"]))
    decisions = decision_frame(session_or_engine=engine)
    engine.dispose()
    in_test = decisions[decisions["arm"].notna()]
    assert len(in_test) == 600
    settings = ab_world["settings"]
    assert isinstance(settings, ExperimentSettings)
    for row in in_test.itertuples():
        assert row.arm == f"ranker-test:{assign_arm(settings, row.user_id).name}"
    versions = in_test.groupby("arm")["model_version"].unique()
    assert list(versions["ranker-test:fitted"]) == ["fitted"]
    assert list(versions["ranker-test:control"]) == ["reversed"]


def test_simulated_ab_interval_contains_the_true_difference_and_stores_the_prediction(
    ab_world: dict[str, object], capsys: pytest.CaptureFixture[str]
) -> None:
    url = str(ab_world["url"])
    code = main(["ab", "analyze", "--experiment", "ranker-test", "--database", url, "--json"])
    assert code == 0
    document = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    online = document["differences"]["fitted"]["clustered"]
    truth = ab_world["true_difference"]
    assert online["lo"] <= truth <= online["hi"]
    assert online["lo"] > 0  # the fitted model clearly wins
    arms = document["arms"]
    assert arms["fitted"]["decisions"] + arms["control"]["decisions"] == 600
    engine = make_engine(url)
    with Session(engine) as session:
        rows = session.exec(select(OpeReport).order_by(OpeReport.id)).all()  # type: ignore[arg-type]
    engine.dispose()
    gate_row, ab_row = rows[0], rows[-1]
    assert gate_row.decision == "ready" and ab_row.decision == "ab"
    assert (ab_row.candidate, ab_row.baseline) == ("fitted", "reversed")
    prediction = ab_row.payload["prediction"]
    assert prediction["report_id"] == gate_row.id
    assert prediction["lift"]["value"] == pytest.approx(gate_row.payload["lift"]["value"])
    assert ab_row.payload["agreement"]["online_minus_offline"] == pytest.approx(
        online["value"] - prediction["lift"]["value"]
    )


def test_analyze_names_an_unknown_experiment(
    ab_world: dict[str, object], capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["ab", "analyze", "--experiment", "nope", "--database", str(ab_world["url"])])
    assert code == 2
    assert "no decision in the log has an arm of experiment 'nope'" in capsys.readouterr().err
