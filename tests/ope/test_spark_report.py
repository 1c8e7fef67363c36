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
