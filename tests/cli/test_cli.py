"""The command line: OPE from a file with a JSON last line, field-naming errors, benchmarks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cli.main import main


def logged_rows(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    pscore = rng.uniform(0.1, 0.9, n)
    return pd.DataFrame(
        {
            "reward": (rng.random(n) < 0.3).astype(float),
            "pscore": pscore,
            "target_pscore": np.clip(pscore + rng.normal(0, 0.05, n), 0.0, 1.0),
        }
    )


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_ope_estimate_prints_a_table_and_a_json_last_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], suffix: str
) -> None:
    frame = logged_rows()
    path = tmp_path / f"rows{suffix}"
    frame.to_csv(path, index=False) if suffix == ".csv" else frame.to_parquet(path)
    assert main(["ope", "estimate", "--input", str(path), "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    last = json.loads(lines[-1])
    w = frame["target_pscore"] / frame["pscore"]
    assert last["estimates"]["ipw"]["value"] == pytest.approx(float((w * frame["reward"]).mean()))
    assert last["estimates"]["snipw"]["value"] == pytest.approx(
        float((w * frame["reward"]).sum() / w.sum())
    )
    for estimate in last["estimates"].values():
        assert estimate["lo"] < estimate["value"] < estimate["hi"]
        assert 0 < estimate["ess"] <= len(frame)
    assert any(line.startswith("ipw") for line in lines)


def test_ope_estimate_names_a_missing_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "missing.csv"
    logged_rows(10).drop(columns=["target_pscore"]).to_csv(path, index=False)
    assert main(["ope", "estimate", "--input", str(path)]) == 2
    assert "target_pscore" in capsys.readouterr().err


def test_bench_explore_ends_with_one_json_object(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["bench", "explore", "--json", "--repeats", "30", "--decisions", "3000"]
    argv += ["--requests", "4", "--draws", "2", "--n-items", "150", "--budgets", "0.01"]
    assert main(argv) == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last["vw"]["decide_us_p50"] > 0
    for name in ("greedy", "epsilon_greedy", "random_insertion", "plackett_luce"):
        entry = last["policies"][name]
        assert 0 < entry["decide_us_p50"] <= entry["decide_us_p99"]
        assert 0.0 <= entry["chi2_p"] <= 1.0 and entry["max_abs_z"] >= 0.0
        assert entry["ratio_to_vw_p50"] == pytest.approx(
            entry["decide_us_p50"] / last["vw"]["decide_us_p50"]
        )
    calibrated = {row["policy"]: row for row in last["calibration"]}
    assert set(calibrated) == {
        "calibrated_epsilon_greedy",
        "calibrated_random_insertion",
        "calibrated_plackett_luce",
    }
    for row in calibrated.values():
        assert row["budget"] == 0.01
        assert row["planned_cost"] <= 0.01 + 1e-12
