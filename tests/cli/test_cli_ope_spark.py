"""``loopbreak ope estimate --engine spark``: the same table and JSON as in-process over day
partitions, and bad datasets or options refused naming the field and what it must be."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from spark_datasets import write_days

from cli.main import main


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str], str]:
    code = main(["ope", "estimate", *args])
    captured = capsys.readouterr()
    return code, captured.out.strip().splitlines(), captured.err


def test_spark_prints_what_in_process_prints(
    spark: object, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_days(tmp_path, days=2, n_decisions=400)
    outputs = [
        run(["--input", str(tmp_path), "--clip", "4", "--json", "--engine", engine], capsys)
        for engine in ("in-process", "spark")
    ]
    assert [code for code, _, _ in outputs] == [0, 0]
    local, distributed = (json.loads(lines[-1])["estimates"] for _, lines, _ in outputs)
    assert len(local) == 13
    for name, numbers in local.items():
        for key, value in numbers.items():
            assert distributed[name][key] == pytest.approx(value, rel=1e-9, abs=1e-12)
    assert outputs[0][1][:2] == outputs[1][1][:2]  # decisions, rows and weights lines


def _drop(column: str) -> Callable[[Path], None]:
    def make(root: Path) -> None:
        write_days(root, days=1, n_decisions=50)
        file = next(root.glob("day=*/part-0.parquet"))
        pd.read_parquet(file).drop(columns=[column]).to_parquet(file, index=False)

    return make


def _bad_row(root: Path) -> None:
    write_days(root, days=2, n_decisions=50)
    file = sorted(root.glob("day=*/part-0.parquet"))[1]
    frame = pd.read_parquet(file)
    frame.loc[17, "pscore"] = 1.5
    frame.to_parquet(file, index=False)


BAD = [
    pytest.param(
        None, ["--input", "{tmp}/nowhere"], "--input {tmp}/nowhere does not exist", id="no-path"
    ),
    pytest.param(
        _drop("target_pscore"),
        ["--input", "{tmp}"],
        "lacks the required column(s) target_pscore",
        id="missing-column",
    ),
    pytest.param(
        _bad_row,
        ["--input", "{tmp}/day=*"],
        "day=2026-01-02/part-0.parquet: pscore must be in (0, 1]; got 1.5 at row 17",
        id="bad-row",
    ),
    pytest.param(
        _bad_row,
        ["--input", "{tmp}", "--master", "local[0]"],
        "--master must be local, local[N]",
        id="bad-master",
    ),
    pytest.param(
        _bad_row,
        ["--input", "{tmp}", "--master", "spark://127.0.0.1:9"],
        "no standalone Spark master answers there",
        id="no-master",
    ),
]


@pytest.mark.parametrize(("make", "options", "says"), BAD)
def test_bad_input_is_refused_naming_the_field(
    spark: object,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    make: object,
    options: list[str],
    says: str,
) -> None:
    if make is not None:
        make(tmp_path)  # type: ignore[operator]
    args = [o.replace("{tmp}", str(tmp_path)) for o in options]
    code, lines, err = run([*args, "--engine", "spark"], capsys)
    assert code == 2
    assert says.replace("{tmp}", str(tmp_path)) in err
    assert lines == []


def test_master_needs_the_spark_engine(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_days(tmp_path, days=1, n_decisions=20)
    code, _, err = run(["--input", str(tmp_path), "--master", "local[2]"], capsys)
    assert code == 2 and "--master needs --engine spark" in err
