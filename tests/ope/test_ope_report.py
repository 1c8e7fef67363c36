"""``loopbreak ope report``: from a file and from the log it writes one self-contained HTML file
(escaped text, embedded plots), its JSON twin and a terminal table; bad rows get an error that
names the column and the row."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sim_decisions import uniform_log

from cli.main import main
from ope.report import build_report, calibration, weight_histogram
from proplog.engine import init_db, make_engine
from sim import World, WorldConfig


def logged_rows(n: int = 600, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    pscore = rng.uniform(0.2, 0.8, n)
    q_hat = rng.uniform(0.05, 0.6, n)
    return pd.DataFrame(
        {
            "reward": (rng.random(n) < q_hat).astype(float),  # q_hat is calibrated
            "pscore": pscore,
            "target_pscore": np.clip(pscore * rng.uniform(0.5, 1.5, n), 0, 1),
            "q_hat": q_hat,
            "v_hat": q_hat * 0.9,
            "surface": rng.choice(["home", "<script>alert(1)</script>"], n),
            "device": rng.choice(["tv", "mobile"], n),
        }
    )


def run_report(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["ope", "report", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_file_report_writes_html_json_and_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frame = logged_rows()
    frame.to_parquet(tmp_path / "rows.parquet")
    out = tmp_path / "report"
    code, stdout, _ = run_report(
        ["--input", str(tmp_path / "rows.parquet"), "--out", str(out), "--json"], capsys
    )
    assert code == 0
    document = json.loads(stdout.strip().splitlines()[-1])
    assert document == json.loads((out / "report.json").read_text())
    assert {"ipw", "snipw", "dm", "dr", "sndr"} <= set(document["estimates"])
    w = frame.target_pscore / frame.pscore
    assert document["estimates"]["ipw"]["value"] == pytest.approx(float((w * frame.reward).mean()))
    assert document["diagnostics"]["ess"] == pytest.approx(float(w.sum() ** 2 / (w**2).sum()))
    assert sum(document["weights"]["counts"]) + document["weights"]["zero"] == len(frame)
    assert set(document["segments"]) == {"surface", "device"}
    by_device = {s["value"]: s for s in document["segments"]["device"]}
    assert by_device["tv"]["decisions"] == int((frame.device == "tv").sum())
    html = (out / "report.html").read_text()
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert len(re.findall(r'src="data:image/png;base64,[A-Za-z0-9+/=]+"', html)) >= 4
    assert "http" not in html  # one self-contained file
    assert re.search(r"^ipw\s+\d", stdout, flags=re.MULTILINE)


def test_calibration_table_tracks_a_calibrated_and_a_biased_model() -> None:
    rng = np.random.default_rng(1)
    q = rng.uniform(0.0, 1.0, 20_000)
    reward = (rng.random(q.size) < q).astype(float)
    good = calibration(q, reward)
    biased = calibration(np.clip(q + 0.2, 0, 1), reward)
    assert good["ece"] < 0.02 < 0.1 < biased["ece"]
    assert sum(b["rows"] for b in good["bins"]) == q.size
    for b in good["bins"]:
        assert b["mean_reward"] == pytest.approx(b["mean_q_hat"], abs=0.05)


def test_weight_histogram_counts_zero_weights_apart() -> None:
    weight = np.array([0.0, 0.0, 0.5, 1.0, 2.0, 40.0])
    histogram = weight_histogram(weight, bins=4)
    assert histogram["zero"] == 2 and sum(histogram["counts"]) == 4
    assert histogram["edges"][0] == pytest.approx(0.5) and histogram["edges"][-1] == 40.0


def test_a_report_without_reward_model_has_no_calibration() -> None:
    frame = logged_rows().drop(columns=["q_hat", "v_hat", "surface", "device"])
    report = build_report(frame)
    assert report["calibration"] is None and report["segments"] == {}
    assert "dr" not in report["estimates"]


BAD_ROWS = [
    ("pscore", 0.0, r"pscore must be in \(0, 1\]; got 0.0 at row 5"),
    ("pscore", 1.5, r"pscore must be in \(0, 1\]; got 1.5 at row 5"),
    ("target_pscore", 1.2, r"target_pscore must be in \[0, 1\]; got 1.2 at row 5"),
    ("reward", np.nan, r"reward must be finite; got nan at row 5"),
    ("q_hat", np.inf, r"q_hat must be finite; got inf at row 5"),
]


@pytest.mark.parametrize(("column", "value", "message"), BAD_ROWS)
@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_bad_rows_name_the_column_and_row(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    column: str,
    value: float,
    message: str,
    suffix: str,
) -> None:
    frame = logged_rows(n=20)
    frame.loc[5, column] = value
    path = tmp_path / f"rows{suffix}"
    frame.to_csv(path, index=False) if suffix == ".csv" else frame.to_parquet(path)
    code, _, err = run_report(["--input", str(path), "--out", str(tmp_path / "r")], capsys)
    assert code == 2
    assert re.search(message, err), err
    assert not (tmp_path / "r" / "report.html").exists()


def test_mismatched_lengths_and_missing_columns_are_named() -> None:
    from ope import OpeBatch, OpeInputError

    with pytest.raises(OpeInputError, match="pscore must have 3 rows like reward; got 2"):
        OpeBatch.from_arrays(reward=[0, 1, 0], pscore=[0.5, 0.5], target_pscore=[0.5] * 3)
    with pytest.raises(OpeInputError, match="missing required column"):
        build_report(logged_rows().drop(columns=["target_pscore"]))


@pytest.fixture(scope="module")
def fitted_log(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, Path]:
    """A uniformly logged world (300 decisions of 4) and a model fitted on it, saved twice: as
    "fitted" and as an unregistered copy to compare with."""
    from loop.retrain import fit_model
    from loop.sim_bridge import catalog_from_world
    from loop.windows import read_window, training_impressions

    tmp_path = tmp_path_factory.mktemp("log_report")
    url = f"sqlite:///{tmp_path / 'log.db'}"
    engine = make_engine(url)
    init_db(engine)
    world = World(WorldConfig(seed=5, n_items=50, n_users=60))
    uniform_log(world, engine, n=300, k=4, seed=1)
    model = fit_model(
        training_impressions(read_window(engine)), catalog_from_world(world),
        model="baseline", version="fitted",
    ).scorer  # fmt: skip
    path = model.save(tmp_path / "fitted.npz")  # type: ignore[attr-defined]
    other = fit_model(
        training_impressions(read_window(engine)), catalog_from_world(world),
        model="baseline", version="other",
    ).scorer  # fmt: skip
    other_path = other.save(tmp_path / "other.npz")  # type: ignore[attr-defined]
    engine.dispose()
    return url, path, other_path


def test_log_report_leads_with_the_decision_and_breaks_down_by_device(
    fitted_log: tuple[str, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, path, _ = fitted_log
    out = tmp_path / "report"
    code, stdout, err = run_report(
        ["--database", url, "--candidate", str(path), "--out", str(out), "--json"], capsys
    )
    assert code == 0, err
    assert stdout.startswith("log window ")  # the decision comes first
    assert "candidate fitted" in stdout and "baseline production" in stdout
    document = json.loads(stdout.strip().splitlines()[-1])
    assert document["decisions"] == 300 and document["rows"] == 1200
    assert document["target"]["candidate"] == "fitted"
    assert document["target"]["unsupported_share"] == 0.0  # uniform logging covers everything
    decision = document["decision"]
    assert decision["window"]["decisions"] == 300 and decision["made_at"]
    assert decision["baseline"]["name"] == "production"
    for side in ("candidate", "baseline"):
        primary = decision[side]["primary"]
        assert primary["lo"] <= primary["value"] <= primary["hi"]
        assert primary["verdict"] in ("reliable", "not reliable") and primary["reasons"]
    # production is on-policy: its weights are all 1
    assert decision["baseline"]["estimates"]["ipw"]["mean_weight"] == pytest.approx(1.0)
    lift = decision["lift"]
    assert lift["value"] == pytest.approx(
        decision["candidate"]["path"][0]["value"] - decision["baseline"]["path"][0]["value"]
        if lift["estimator"] == "dr"
        else lift["value"]
    )
    assert document["calibration"]["mean_q_hat"] == pytest.approx(
        document["calibration"]["mean_reward"], rel=0.2
    )
    devices = {s["value"] for s in document["segments"]["device"]}
    assert devices and devices <= {"tv", "mobile", "tablet", "web"}
    assert abs(document["diagnostics"]["mean_weight"] - 1.0) < 0.3
    page = (out / "report.html").read_text()
    assert page.index("<h2>Decision</h2>") < page.index("Estimates with")


def test_report_and_gate_agree_on_the_same_candidate_and_window(
    fitted_log: tuple[str, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, path, other = fitted_log
    window = ["--since", "2026-01-01T00:00:00"]
    code, stdout, err = run_report(
        ["--database", url, "--candidate", str(path), "--out", str(tmp_path), "--json", *window],
        capsys,
    )
    assert code == 0, err
    decision = json.loads(stdout.strip().splitlines()[-1])["decision"]
    main(["ope", "gate", "--database", url, "--candidate", str(path), "--json", *window])
    payload = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    gated = payload["evaluation"]
    for key in ("value", "lo", "hi"):
        assert payload["lift"][key] == pytest.approx(decision["lift"][key], abs=1e-9)
        for side in ("candidate", "baseline"):
            assert gated[side]["primary"][key] == pytest.approx(
                decision[side]["primary"][key], abs=1e-9
            )
    assert payload["primary"]["estimator"] == decision["lift"]["estimator"]
    # the candidate's estimates do not depend on what it is compared with
    main(["ope", "gate", "--database", url, "--candidate", str(path), "--baseline", str(other),
          "--json", *window])  # fmt: skip
    paired = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["evaluation"]
    for name in ("dm", "dr", "ipw", "snipw"):
        assert paired["candidate"]["estimates"][name]["value"] == pytest.approx(
            decision["candidate"]["estimates"][name]["value"], abs=1e-12
        )


@pytest.mark.parametrize(
    "policy",
    [
        ["--policy", "plackett_luce", "--temperature", "0.5", "--pool", "8"],
        ["--policy", "random_insertion", "--epsilon", "0.3", "--pool", "10"],
        ["--policy", "greedy"],
        ["--policy", "epsilon_greedy", "--budget", "0.05", "--pool", "20"],
    ],
)
def test_any_exploration_family_is_a_target(
    fitted_log: tuple[str, Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    policy: list[str],
) -> None:
    url, path, _ = fitted_log
    args = ["--database", url, "--candidate", str(path), "--out", str(tmp_path), "--json"]
    code, stdout, err = run_report([*args, *policy], capsys)
    assert code == 0, err
    decision = json.loads(stdout.strip().splitlines()[-1])["decision"]
    assert decision["policy"]["family"] == policy[1]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--policy", "epsilon_greedy", "--epsilon", "2"], "epsilon"),
        (["--policy", "plackett_luce", "--temperature", "-1"], "temperature"),
        (["--since", "yesterday"], "--since must be an ISO date"),
        (["--since", "2099-01-01"], "the log window holds no decisions"),
    ],
)
def test_bad_target_and_window_options_are_named(
    fitted_log: tuple[str, Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    options: list[str],
    message: str,
) -> None:
    url, path, _ = fitted_log
    args = ["--database", url, "--candidate", str(path), "--out", str(tmp_path / "r")]
    code, _, err = run_report([*args, *options], capsys)
    assert code == 2 and message in err
    assert not (tmp_path / "r" / "report.json").exists()


def test_a_candidate_is_not_evaluated_on_its_own_training_window_unless_forced(
    fitted_log: tuple[str, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sqlmodel import Session

    from proplog.registry import record_model_version

    url, path, _ = fitted_log
    engine = make_engine(url)
    with Session(engine) as session:
        record_model_version(
            session=session, version="fitted", kind="baseline", metrics={}, path=str(path),
            params={"training_window": {"first": "2000-01-01T00:00:00+00:00",
                                        "last": "2100-01-01T00:00:00+00:00"}},
        )  # fmt: skip
    engine.dispose()
    args = ["--database", url, "--candidate", "fitted", "--out", str(tmp_path / "r")]
    code, _, err = run_report(args, capsys)
    assert code == 2 and "in the candidate's training window" in err and "--force" in err
    gate_code = main(["ope", "gate", "--database", url, "--candidate", "fitted"])
    assert gate_code == 2 and "training window" in capsys.readouterr().err
    code, stdout, err = run_report([*args, "--force", "--json"], capsys)
    assert code == 0, err
    decision = json.loads(stdout.strip().splitlines()[-1])["decision"]
    assert "300 of the window's 300 decisions" in decision["training_overlap"]
    assert "its own training data" in stdout
