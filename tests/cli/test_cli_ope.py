"""``loopbreak ope estimate`` with a reward model: every estimator the columns allow, the
hyperparameter options, and errors naming the bad column and row."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cli.main import main

ALL_SEVEN = {"ipw", "snipw", "dm", "dr", "sndr", "dros", "switch-dr"}


def logged_rows_with_model(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    pscore = rng.uniform(0.1, 0.9, n)
    return pd.DataFrame(
        {
            "reward": (rng.random(n) < 0.3).astype(float),
            "pscore": pscore,
            "target_pscore": np.clip(pscore * rng.uniform(0.2, 3.0, n), 0.0, 1.0),
            "q_hat": rng.uniform(0.1, 0.5, n),
            "v_hat": rng.uniform(0.1, 0.5, n),
        }
    )


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str], str]:
    code = main(["ope", "estimate", *args])
    captured = capsys.readouterr()
    return code, captured.out.strip().splitlines(), captured.err


@pytest.fixture
def csv_path(tmp_path: Path) -> Path:
    path = tmp_path / "rows.csv"
    logged_rows_with_model().to_csv(path, index=False)
    return path


def test_json_last_line_has_all_seven_and_dr_is_the_manual_value(
    csv_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, lines, _ = run(["--input", str(csv_path), "--json"], capsys)
    assert code == 0
    estimates = json.loads(lines[-1])["estimates"]
    assert set(estimates) == ALL_SEVEN
    frame = pd.read_csv(csv_path)
    w = frame.target_pscore / frame.pscore
    e = frame.reward - frame.q_hat
    assert estimates["dr"]["value"] == pytest.approx(float((frame.v_hat + w * e).mean()), rel=1e-12)
    assert estimates["dm"]["value"] == pytest.approx(float(frame.v_hat.mean()), rel=1e-12)
    # defaults: DRos lambda 1, Switch-DR tau 1
    dros = frame.v_hat + w / (w**2 + 1.0) * e
    assert estimates["dros"]["value"] == pytest.approx(float(dros.mean()), rel=1e-12)
    switch = frame.v_hat + np.where(w <= 1.0, w, 0.0) * e
    assert estimates["switch-dr"]["value"] == pytest.approx(float(switch.mean()), rel=1e-12)
    for estimate in estimates.values():
        assert set(estimate) == {"value", "lo", "hi", "ess"}
        assert estimate["lo"] < estimate["value"] < estimate["hi"]
        assert 0 < estimate["ess"] <= len(frame)
    for name in ALL_SEVEN:  # the table has a row per estimator
        assert any(line.split()[:1] == [name] for line in lines)
    assert any(line.startswith("weights: ess") for line in lines)


def test_options_set_dros_lambda_switch_tau_and_add_clipped_ipw(
    csv_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--input", str(csv_path), "--json", "--dros-lambda", "10", "--switch-tau", "2.5"]
    code, lines, _ = run([*args, "--clip", "2"], capsys)
    assert code == 0
    estimates = json.loads(lines[-1])["estimates"]
    assert set(estimates) == ALL_SEVEN | {"clipped-ipw"}
    frame = pd.read_csv(csv_path)
    w = frame.target_pscore / frame.pscore
    e = frame.reward - frame.q_hat
    expected = {
        "clipped-ipw": np.minimum(w, 2.0) * frame.reward,
        "dros": frame.v_hat + 10.0 * w / (w**2 + 10.0) * e,
        "switch-dr": frame.v_hat + np.where(w <= 2.5, w, 0.0) * e,
    }
    for name, terms in expected.items():
        assert estimates[name]["value"] == pytest.approx(float(terms.mean()), rel=1e-12), name
    assert 0 < (w > 2.0).sum() < len(frame)  # clipping binds on some rows
    clipped_line = next(line for line in lines if line.startswith("clipped-ipw"))
    assert "clip 2" in clipped_line and "clipped" in clipped_line


def test_without_model_columns_only_ipw_and_snipw(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bare.csv"
    logged_rows_with_model().drop(columns=["q_hat", "v_hat"]).to_csv(path, index=False)
    code, lines, _ = run(["--input", str(path), "--json"], capsys)
    assert code == 0
    assert set(json.loads(lines[-1])["estimates"]) == {"ipw", "snipw"}
    assert any("need both" in line for line in lines)


@pytest.mark.parametrize(
    ("column", "row", "value", "expected"),
    [
        ("pscore", 3, 0.0, r"pscore must be in \(0, 1\]; got 0.0 at row 3"),
        ("pscore", 7, 1.5, r"pscore .* at row 7"),
        ("reward", 5, np.nan, r"reward must be finite; got nan at row 5"),
        ("target_pscore", 2, -0.2, r"target_pscore .* at row 2"),
        ("q_hat", 4, np.nan, r"q_hat must be finite; got nan at row 4"),
        ("v_hat", 9, np.inf, r"v_hat must be finite; got inf at row 9"),
    ],
)
def test_bad_column_is_named_with_its_row(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    column: str,
    row: int,
    value: float,
    expected: str,
) -> None:
    frame = logged_rows_with_model(20)
    frame.loc[row, column] = value
    path = tmp_path / "bad.csv"
    frame.to_csv(path, index=False)
    code, _, err = run(["--input", str(path)], capsys)
    assert code == 2
    assert re.search(expected, err), err


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        ("--dros-lambda", "-1", "lambda_ must be in [0, inf]; got -1.0"),
        ("--switch-tau", "nan", "tau must be in [0, inf]; got nan"),
        ("--clip", "-2", "lambda_ must be in [0, inf]; got -2.0"),
    ],
)
def test_bad_hyperparameter_exits_2(
    csv_path: Path, capsys: pytest.CaptureFixture[str], option: str, value: str, expected: str
) -> None:
    code, _, err = run(["--input", str(csv_path), option, value], capsys)
    assert code == 2
    assert expected in err


@pytest.mark.parametrize("interval", ["normal", "t", "bootstrap", "bernstein"])
def test_any_chunk_size_gives_the_same_numbers(
    csv_path: Path, capsys: pytest.CaptureFixture[str], interval: str
) -> None:
    common = ["--input", str(csv_path), "--interval", interval, "--bootstrap", "50", "--json"]
    code, whole, _ = run(common, capsys)
    assert code == 0
    code, chunked, _ = run([*common, "--chunk-rows", "37"], capsys)
    assert code == 0
    a, b = json.loads(whole[-1])["estimates"], json.loads(chunked[-1])["estimates"]
    assert set(a) == set(b) == ALL_SEVEN
    for name in a:
        for key in ("value", "lo", "hi", "ess"):
            assert b[name][key] == pytest.approx(a[name][key], rel=1e-10), (name, key)
    assert f"95% intervals: {interval}" in whole[0]


def test_bernstein_is_wider_than_normal_and_self_normalized_rows_say_t(
    csv_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, normal, _ = run(["--input", str(csv_path), "--json"], capsys)
    _, bernstein, _ = run(["--input", str(csv_path), "--interval", "bernstein", "--json"], capsys)
    n, b = json.loads(normal[-1])["estimates"], json.loads(bernstein[-1])["estimates"]
    for name in ("ipw", "dm", "dr", "dros", "switch-dr"):
        assert b[name]["hi"] - b[name]["lo"] > n[name]["hi"] - n[name]["lo"], name
    rows = {line.split()[0]: line for line in bernstein if line and line.split()[0] in ALL_SEVEN}
    assert rows["snipw"].endswith("t interval") and rows["sndr"].endswith("t interval")
    assert "t interval" not in rows["ipw"]


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--reward-range", "1", "0"], "reward_max must exceed reward_min"),
        (["--interval", "bernstein", "--reward-range", "0", "0.5"], "outside the bounds"),
        (["--interval", "bernstein", "--weight-max", "1.5"], "weight_max 1.5 is below"),
        (["--chunk-rows", "0"], "chunk_rows must be a positive int"),
        (["--interval", "bootstrap", "--bootstrap", "-3"], "n_bootstrap must be a non-negative"),
    ],
)
def test_bad_interval_options_exit_2_naming_them(
    csv_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], match: str
) -> None:
    code, lines, err = run(["--input", str(csv_path), *args], capsys)
    assert code == 2
    assert re.search(match, err), err
    assert lines == []
