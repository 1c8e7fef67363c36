"""A Parquet dataset of OPE rows as both engines read it: one file, a folder of partitions (read
recursively, e.g. the day partitions of ``loopbreak export``), or a glob; its files in path
order, their row counts from the footers, and the in-process reading of it that the Spark
engine must equal.

Rows of one decision lie in one file and are contiguous there (the exports write them so). A
dataset without ``decision_id`` has one decision per row, keyed by its row number in the whole
dataset (files in path order), which is what the bootstrap draws from on either engine.
"""

from __future__ import annotations

import dataclasses
import glob
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ope.batch import OpeBatch, OpeInputError
from ope.streaming import CHUNK_ROWS, COLUMNS, read_batches

REQUIRED = ("reward", "pscore", "target_pscore")


@dataclass(frozen=True)
class ParquetDataset:
    """The files of a dataset in path order, with each file's rows and first row's number."""

    source: str
    files: tuple[Path, ...]
    rows: tuple[int, ...]
    columns: tuple[str, ...]

    @property
    def offsets(self) -> tuple[int, ...]:
        """Each file's first row in the whole dataset."""
        return tuple(int(x) for x in np.r_[0, np.cumsum(self.rows)[:-1]]) if self.rows else ()

    @property
    def n_rows(self) -> int:
        return int(sum(self.rows))

    @property
    def contract_columns(self) -> list[str]:
        """The columns of the OPE input contract the dataset has, in the contract's order."""
        return [c for c in COLUMNS if c in self.columns]


def _files(source: str) -> list[Path]:
    path = Path(source)
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(p for p in path.rglob("*.parquet") if p.is_file())
    if glob.has_magic(source):
        found = sorted(Path(p) for p in glob.glob(source, recursive=True))
        return [
            f
            for p in found
            for f in ([p] if p.is_file() else sorted(p.rglob("*.parquet")))
            if f.is_file()
        ]
    raise FileNotFoundError(f"--input {source} does not exist")


def open_dataset(source: str | Path, *, required: tuple[str, ...] = REQUIRED) -> ParquetDataset:
    """The dataset at ``source`` (a file, a folder or a glob), its schema checked: every file
    must have the ``required`` columns, and all files the same columns."""
    import pyarrow.parquet as pq

    source = str(source)
    files = _files(source)
    if not files:
        raise FileNotFoundError(f"--input {source} holds no .parquet files")
    bad = [f for f in files if f.suffix != ".parquet"]
    if bad:
        raise OpeInputError(f"the dataset's files must be .parquet; got {bad[0]}")
    rows: list[int] = []
    columns: tuple[str, ...] | None = None
    for file in files:
        try:
            meta = pq.read_metadata(file)
        except Exception as exc:  # pyarrow raises several kinds for a file that is not Parquet
            raise OpeInputError(f"{file} is not a readable Parquet file: {exc}") from None
        names = tuple(meta.schema.to_arrow_schema().names)
        missing = [c for c in required if c not in names]
        if missing:
            raise OpeInputError(
                f"{file} lacks the required column(s) {', '.join(missing)} "
                f"(the OPE input needs {', '.join(required)})"
            )
        if columns is not None and set(names) != set(columns):
            differ = sorted(set(names) ^ set(columns))
            raise OpeInputError(
                f"{file} has other columns than {files[0]}: {', '.join(differ)}; every file of "
                "a dataset must have the same columns"
            )
        columns = columns or names
        rows.append(int(meta.num_rows))
    if sum(rows) == 0:
        raise OpeInputError(f"--input {source} has no rows")
    return ParquetDataset(
        source=source, files=tuple(files), rows=tuple(rows), columns=columns or ()
    )


def _first_id(file: Path) -> object:
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(file)
    for batch in parquet.iter_batches(batch_size=1, columns=["decision_id"]):
        return batch.column(0)[0].as_py() if batch.num_rows else None
    return None


def dataset_batches(dataset: ParquetDataset, *, chunk_rows: int = CHUNK_ROWS) -> Iterator[OpeBatch]:
    """OpeBatches of the whole dataset, file by file in path order (the in-process engine).
    Without ``decision_id``, each row's key is its row number in the dataset; with it, a
    decision that continues from one file into the next is an error."""
    keyed = "decision_id" in dataset.columns
    last_id: object = None
    previous: Path | None = None
    for file, offset, n in zip(dataset.files, dataset.offsets, dataset.rows, strict=True):
        if n == 0:
            continue
        if keyed:
            first = _first_id(file)
            if last_id is not None and first == last_id:
                raise OpeInputError(
                    f"decision_id {first!r} continues from {previous} into {file}; rows of one "
                    "decision must be in one file"
                )
        try:
            for batch in read_batches(file, chunk_rows=chunk_rows):
                if not keyed:
                    batch = dataclasses.replace(batch, keys=batch.decision_key + np.uint64(offset))
                else:
                    last_id = None
                yield batch
        except OpeInputError as exc:
            raise OpeInputError(f"{file}: {exc}") from None
        if keyed:
            last_id, previous = _last_id(file), file


def _last_id(file: Path) -> object:
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(file)
    group = parquet.num_row_groups - 1
    column = parquet.read_row_group(group, columns=["decision_id"]).column(0)
    return column[len(column) - 1].as_py() if len(column) else None
