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


def test_log_report_replays_a_model_and_breaks_down_by_device(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from loop.retrain import fit_model
    from loop.sim_bridge import catalog_from_world
    from loop.windows import read_window, training_impressions

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
    engine.dispose()
    out = tmp_path / "report"
    code, stdout, err = run_report(
        ["--database", url, "--candidate", str(path), "--out", str(out), "--json"], capsys
    )
    assert code == 0, err
    document = json.loads(stdout.strip().splitlines()[-1])
    assert document["decisions"] == 300 and document["rows"] == 1200
    assert document["target"]["candidate"] == "fitted"
    assert document["target"]["unsupported_mass"] == 0.0  # uniform logging covers everything
    assert document["calibration"]["mean_q_hat"] == pytest.approx(
        document["calibration"]["mean_reward"], rel=0.2
    )
    devices = {s["value"] for s in document["segments"]["device"]}
    assert devices and devices <= {"tv", "mobile", "tablet", "web"}
    assert abs(document["diagnostics"]["mean_weight"] - 1.0) < 0.3
