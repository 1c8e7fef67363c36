"""``loopbreak bench ope --engine spark`` at toy sizes: both engines estimate the same files to
1e-9, the table and the one JSON object agree, and bad sizes or masters are refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import ope_spark
from cli.main import main


def test_both_engines_at_each_size(spark: object, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["bench", "ope", "--engine", "spark", "--sizes", "3000,2e4", "--json"]
    assert main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    result = json.loads(lines[-1])
    assert [r["rows"] for r in result["sizes"]] == [3000, 20000]
    assert result["max_rel_diff"] < 1e-9
    for r in result["sizes"]:
        assert r["spark_over_in_process"] == pytest.approx(r["spark_s"] / r["in_process_s"])
        assert r["spark_rows_per_s"] == pytest.approx(r["rows"] / r["spark_s"])
        assert f"{r['rows']:>12,}" in "\n".join(lines[:-1])
    assert result["growth"]["rows"] == pytest.approx(20000 / 3000)


def test_the_dataset_is_split_in_files_and_row_groups(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pyarrow.parquet as pq

    monkeypatch.setattr(ope_spark, "FILE_ROWS", 1000)
    monkeypatch.setattr(ope_spark, "GROUP_ROWS", 100)
    files = ope_spark.write_dataset(tmp_path, 1500, seed=0)
    assert [pq.read_metadata(f).num_rows for f in files] == [1000, 500]
    assert [pq.read_metadata(f).num_row_groups for f in files] == [10, 5]


@pytest.mark.parametrize(
    ("options", "says"),
    [(["--sizes", "0,10"], "--sizes must be positive row counts"),
     (["--sizes", "100", "--master", "nowhere"], "--master must be local")],
)  # fmt: skip
def test_bad_options_are_refused(
    options: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench", "ope", "--engine", "spark", *options]) == 2
    assert says in capsys.readouterr().err
