"""The OPE report on Spark equals ``ope.report.build_report`` of the same rows to 1e-9: every
estimate, the diagnostics, the weight histogram and its quantiles, the reward model's
calibration bins and the segments (a segment with missing values included)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from spark_datasets import write_days

from ope import OpeInputError
from ope.report import build_report
from ope.spark_dataset import open_dataset
from ope.spark_report import spark_report


def assert_same(got: Any, want: Any, where: str = "report") -> None:
    if isinstance(want, dict):
        assert sorted(got) == sorted(want), where
        for key in want:
            assert_same(got[key], want[key], f"{where}.{key}")
    elif isinstance(want, list):
        assert len(got) == len(want), where
        for i, (a, b) in enumerate(zip(got, want, strict=True)):
            assert_same(a, b, f"{where}[{i}]")
    elif isinstance(want, float):
        assert got == pytest.approx(want, rel=1e-9, abs=1e-12), where
    else:
        assert got == want, where


def test_the_report_equals_the_in_process_one(spark: Any, tmp_path: Path) -> None:
    frames = write_days(tmp_path, days=2, n_decisions=700)
    for day, frame in enumerate(frames):  # a device segment with gaps, and ties in q_hat
        gap = frame["decision_id"].str[-6:].astype(int).to_numpy() % 7 == 0
        frame["device"] = np.where(gap, None, ["tv", "phone"][day])
        frame.loc[frame.index % 5 == 0, "q_hat"] = 0.5
        frame.to_parquet(next(tmp_path.glob(f"day=2026-01-0{day + 1}/*.parquet")), index=False)
    spark.conf.set("spark.sql.files.maxPartitionBytes", "30000")
    try:
        got = spark_report(spark, open_dataset(tmp_path), source="days", alpha=0.1)
    finally:
        spark.conf.unset("spark.sql.files.maxPartitionBytes")
    want = build_report(pd.concat(frames, ignore_index=True), source="days", alpha=0.1)
    assert_same(got, want)
    assert len(want["estimates"]) == 12 and want["calibration"]["bins"]
    assert [e["value"] for e in want["segments"]["device"]] == ["(missing)", "phone", "tv"]


def test_a_missing_column_is_refused_naming_it(spark: Any, tmp_path: Path) -> None:
    frame = write_days(tmp_path, days=1, n_decisions=20)[0].drop(columns=["target_pscore"])
    frame.to_parquet(next(tmp_path.glob("day=*/*.parquet")), index=False)
    with pytest.raises(OpeInputError, match=r"lacks the required column\(s\) target_pscore"):
        spark_report(spark, open_dataset(tmp_path))


def test_the_report_command_on_spark_writes_the_in_process_numbers(
    spark: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``loopbreak ope report --engine spark`` over the day partitions writes the report of the
    same rows as one file gives in-process (without the primary estimate, in-process only)."""
    import json

    from cli.main import main

    frames = write_days(tmp_path / "days", days=2, n_decisions=300)
    single = tmp_path / "rows.parquet"
    pd.concat(frames, ignore_index=True).to_parquet(single, index=False)
    reports = {}
    for engine, source in (("in-process", single), ("spark", tmp_path / "days")):
        out = tmp_path / engine
        code = main(["ope", "report", "--input", str(source), "--engine", engine,
                     "--out", str(out), "--alpha", "0.1"])  # fmt: skip
        assert code == 0, capsys.readouterr().err
        reports[engine] = json.loads((out / "report.json").read_text())
        assert (out / "report.html").stat().st_size > 0
    local, distributed = reports["in-process"], reports["spark"]
    assert distributed["primary"] is None and distributed["source"] == str(tmp_path / "days")
    for key in ("estimates", "diagnostics", "weights", "calibration", "segments", "rows"):
        assert_same(distributed[key], local[key], key)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--candidate", "m.npz"], "not a log replay"),
        (["--input", "{tmp}", "--segment", "country"], "segment column(s) country not in"),
        (["--input", "{tmp}", "--master", "local[0]"], "--master must be local, local[N]"),
    ],
)
def test_the_report_command_on_spark_refuses_bad_options(
    spark: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    from cli.main import main

    write_days(tmp_path, days=1, n_decisions=20)
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    code = main(["ope", "report", "--engine", "spark", "--out", str(tmp_path / "out"), *args])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out" / "report.json").exists()
