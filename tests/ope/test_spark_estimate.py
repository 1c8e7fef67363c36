"""OPE on Spark equals the in-process path to 1e-9: every estimator, each kind of interval (the
Poisson bootstrap keyed by decision included) and the weight diagnostics, over a dataset of day
partitions that Spark splits mid-decision; and bad datasets are refused naming the file, the
column and the row, before any estimate."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from spark_datasets import write_days

from ope import Bounds, OpeInputError, estimators
from ope.spark_dataset import dataset_batches, open_dataset
from ope.spark_estimate import spark_estimates, spark_partials
from ope.streaming import finish_all, stream_partials

TOLERANCE = 1e-9
N_BOOTSTRAP = 40
INTERVALS = ("normal", "t", "bernstein", "bootstrap")


@pytest.fixture
def small_splits(spark: Any) -> Iterator[Any]:
    """Spark partitions of about 20 kB, so that files (and decisions) are split between them."""
    spark.conf.set("spark.sql.files.maxPartitionBytes", "20000")
    yield spark
    spark.conf.unset("spark.sql.files.maxPartitionBytes")


def assert_same(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert sorted(a) == sorted(b)
    for name in a:
        left, right = a[name].as_dict(), b[name].as_dict()
        assert sorted(left) == sorted(right), name
        for key, value in left.items():
            if isinstance(value, float):
                assert right[key] == pytest.approx(value, rel=TOLERANCE, abs=TOLERANCE), (
                    name,
                    key,
                )
            else:
                assert right[key] == value, (name, key)


@pytest.fixture(scope="module")
def keyed_days(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("keyed")
    write_days(root)
    return root


def test_every_estimator_and_interval_equals_the_in_process_path(
    small_splits: Any, keyed_days: Path
) -> None:
    dataset = open_dataset(keyed_days)
    chosen = estimators(clip=5.0)
    local, rows = stream_partials(
        dataset_batches(dataset, chunk_rows=500), chosen, n_bootstrap=N_BOOTSTRAP, seed=11
    )
    distributed, spark_rows = spark_partials(
        small_splits, dataset, chosen, n_bootstrap=N_BOOTSTRAP, seed=11
    )
    assert small_splits.read.parquet(str(keyed_days)).rdd.getNumPartitions() > len(dataset.files)
    assert spark_rows == rows == dataset.n_rows
    assert len(local) == 13  # every estimator runs on these columns
    for interval in INTERVALS:
        options = {"alpha": 0.1, "interval": interval, "bounds": Bounds()}
        assert_same(
            finish_all(local, chosen, **options), finish_all(distributed, chosen, **options)
        )
    # the bootstrap replicates themselves, not only their percentiles
    for name, partial in local.items():
        np.testing.assert_allclose(
            distributed[name].bootstrap.weighted, partial.bootstrap.weighted, rtol=TOLERANCE
        )
        np.testing.assert_array_equal(distributed[name].bootstrap.counts, partial.bootstrap.counts)


def test_rows_without_decision_ids_are_keyed_by_their_row_in_the_dataset(
    small_splits: Any, tmp_path: Path
) -> None:
    write_days(tmp_path, keyed=False)
    dataset = open_dataset(str(tmp_path / "day=*"))
    chosen = estimators()
    local = finish_all(
        stream_partials(dataset_batches(dataset), chosen, n_bootstrap=N_BOOTSTRAP, seed=5)[0],
        chosen,
        interval="bootstrap",
    )
    distributed = spark_estimates(
        small_splits, dataset, chosen, interval="bootstrap", n_bootstrap=N_BOOTSTRAP, seed=5
    )
    assert_same(local, distributed)
    assert distributed["ipw"].n_decisions == dataset.n_rows


def _write(root: Path, frames: dict[str, pd.DataFrame]) -> None:
    for name, frame in frames.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(path, index=False, row_group_size=50)


def _rows(n: int, start: int = 0) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "decision_id": [f"d{j // 2:04d}" for j in range(start, start + n)],
            "slot": np.arange(start, start + n) % 2,
            "reward": np.ones(n),
            "pscore": np.full(n, 0.5),
            "target_pscore": np.full(n, 0.25),
        }
    )


def _bad_value(column: str, row: int, value: float) -> pd.DataFrame:
    frame = _rows(200, 200)
    frame.loc[row, column] = value
    return frame


BAD_VALUES = [
    pytest.param(
        _bad_value("pscore", 131, 0.0), "pscore must be in (0, 1]", "at row 131", id="pscore-0"
    ),
    pytest.param(
        _bad_value("target_pscore", 77, 1.5),
        "target_pscore must be in [0, 1]",
        "at row 77",
        id="target-above-1",
    ),
    pytest.param(
        _bad_value("reward", 190, np.inf), "reward must be finite", "at row 190", id="reward-inf"
    ),
    pytest.param(
        _bad_value("slot", 12, -1.0),
        "slot must be a non-negative integer",
        "at row 12",
        id="slot-negative",
    ),
]


@pytest.mark.parametrize(("second", "says", "where"), BAD_VALUES)
def test_a_bad_value_names_the_file_column_and_row_on_both_engines(
    small_splits: Any, tmp_path: Path, second: pd.DataFrame, says: str, where: str
) -> None:
    _write(tmp_path, {"day=1/a.parquet": _rows(200), "day=2/b.parquet": second})
    dataset = open_dataset(tmp_path)
    chosen = estimators()
    with pytest.raises(OpeInputError) as local:
        stream_partials(dataset_batches(dataset), chosen)
    with pytest.raises(OpeInputError) as distributed:
        spark_partials(small_splits, dataset, chosen)
    for error in (local.value, distributed.value):
        assert "b.parquet" in str(error) and says in str(error) and where in str(error)


def test_a_decision_in_two_files_is_refused_on_both_engines(spark: Any, tmp_path: Path) -> None:
    _write(tmp_path, {"day=1/a.parquet": _rows(201), "day=2/b.parquet": _rows(99, 201)})
    dataset = open_dataset(tmp_path)
    with pytest.raises(OpeInputError, match=r"d0100'? continues from .*a.parquet into"):
        stream_partials(dataset_batches(dataset), estimators())
    with pytest.raises(OpeInputError, match=r"d0100'? continues from .*a.parquet into"):
        spark_partials(spark, dataset, estimators())


BAD_DATASETS = [
    pytest.param({}, "nowhere", FileNotFoundError, "does not exist", id="missing-path"),
    pytest.param(
        {"day=1/notes.txt": None},
        "",
        FileNotFoundError,
        "holds no .parquet files",
        id="no-parquet",
    ),
    pytest.param(
        {"a.parquet": _rows(4).drop(columns=["pscore"])},
        "",
        OpeInputError,
        r"a.parquet lacks the required column\(s\) pscore",
        id="missing-column",
    ),
    pytest.param(
        {"a.parquet": _rows(4), "b.parquet": _rows(4).assign(q_hat=0.5)},
        "",
        OpeInputError,
        "b.parquet has other columns than .*a.parquet: q_hat",
        id="columns-differ",
    ),
    pytest.param({"a.parquet": _rows(0)}, "", OpeInputError, "has no rows", id="no-rows"),
]


@pytest.mark.parametrize(("files", "name", "error", "says"), BAD_DATASETS)
def test_a_bad_dataset_is_refused_before_spark_reads_it(
    tmp_path: Path, files: dict, name: str, error: type, says: str
) -> None:
    for file, frame in files.items():
        (tmp_path / file).parent.mkdir(parents=True, exist_ok=True)
        if frame is None:
            (tmp_path / file).write_text("not a dataset")
        else:
            frame.to_parquet(tmp_path / file, index=False)
    with pytest.raises(error, match=says):
        open_dataset(tmp_path / name)


def test_a_file_that_is_not_parquet_is_named(tmp_path: Path) -> None:
    (tmp_path / "a.parquet").write_text("not parquet")
    with pytest.raises(OpeInputError, match=r"a.parquet is not a readable Parquet file"):
        open_dataset(tmp_path)
