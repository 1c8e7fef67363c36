"""Estimates on Spark: each Spark partition of a Parquet dataset reduces to the estimators'
mergeable partials (``ope.moments``), and the driver merges them and finishes, so the estimates,
intervals (the Poisson bootstrap keyed by decision included) and diagnostics are those of the
in-process path (``ope.spark_dataset.dataset_batches``) up to floating-point summation order.

Spark may split a file between partitions, and with it a decision. A partition therefore
reduces only the decisions it holds whole; the first and last decision of each file piece it
holds travel to the driver as rows (a few per partition), where they are put back together in
file order and reduced there. A decision whose rows are in two files is an error, as in-process.

Bad rows are reported, not raised, by the tasks: the driver raises ``OpeInputError`` naming the
file, the column and the row in that file, before any estimate is made.
"""

from __future__ import annotations

import dataclasses
import logging
import pickle
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

import numpy as np
import pandas as pd

from ope.batch import OpeBatch, OpeInputError
from ope.estimators import Bounds, Estimate, Estimator, Partial
from ope.spark_dataset import ParquetDataset
from ope.spark_session import quiet_pandas_warning
from ope.streaming import _check_contiguous, finish_all

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

logger = logging.getLogger(__name__)

FILE = "_file"
ROW = "_row"
RESULT_SCHEMA = "kind string, file long, row long, payload binary"
ARROW_BATCH_ROWS = 200_000
_AT_ROW = re.compile(r"at row (\d+)")


def local_path(uri: str) -> str:
    """The file path of a ``file:`` URI as Spark writes it (``file:/a/b``) or Python does."""
    parsed = urlparse(uri)
    return str(Path(unquote(parsed.path)).resolve()) if parsed.scheme == "file" else uri


def read_dataset(spark: SparkSession, dataset: ParquetDataset, columns: Sequence[str]) -> DataFrame:
    """The dataset's ``columns`` with each row's file (its rank in path order) and row in that
    file, as Spark reads them."""
    from pyspark.sql import functions as sf

    rank = {str(f.resolve()): i for i, f in enumerate(dataset.files)}
    frame = spark.read.parquet(*[str(f) for f in dataset.files])
    ranks = sf.create_map(*[x for path, i in rank.items() for x in (sf.lit(path), sf.lit(i))])
    path = sf.regexp_replace(sf.col("_metadata.file_path"), "^file:(//)?", "")
    return frame.select(
        *columns,
        ranks[sf.url_decode(path)].cast("long").alias(FILE),
        sf.col("_metadata.row_index").cast("long").alias(ROW),
    )


def _error(part: pd.DataFrame, message: str) -> pd.DataFrame:
    """A task's report of bad input: the row in the file where the message says a row."""
    found = _AT_ROW.search(message)
    row = int(part[ROW].iloc[int(found[1])]) if found else int(part[ROW].iloc[0])
    text = _AT_ROW.sub(f"at row {row}", message) if found else message
    file = int(part[FILE].iloc[0])
    return pd.DataFrame({"kind": ["error"], "file": [file], "row": [row],
                         "payload": [text.encode()]})  # fmt: skip


def _partials_row(partials: dict[str, Partial], part: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"kind": ["partials"], "file": [int(part[FILE].iloc[0])],
                         "row": [int(part[ROW].iloc[0])],
                         "payload": [pickle.dumps(partials)]})  # fmt: skip


def batch_partials(
    batch: OpeBatch, chosen: Sequence[Estimator], n_bootstrap: int, seed: int
) -> dict[str, Partial]:
    """Every estimator's partial that the batch's columns allow."""
    return {
        e.name: e.partial(batch, n_bootstrap=n_bootstrap, seed=seed)
        for e in chosen
        if e.supports(batch)
    }


def _edges(ids: np.ndarray) -> np.ndarray:
    """Rows of the first and of the last decision of a piece (they may continue elsewhere)."""
    change = np.flatnonzero(ids[1:] != ids[:-1])
    edge = np.zeros(ids.size, dtype=bool)
    if change.size == 0:
        edge[:] = True
        return edge
    edge[: change[0] + 1] = True
    edge[change[-1] + 1 :] = True
    return edge


def reduce_piece(
    part: pd.DataFrame,
    *,
    chosen: Sequence[Estimator],
    offsets: Sequence[int],
    n_bootstrap: int,
    seed: int,
) -> Iterator[pd.DataFrame]:
    """One file's rows in one partition, in file order, to partials (and edge rows)."""
    contract = [c for c in part.columns if c not in (FILE, ROW)]
    if "decision_id" not in part.columns:
        try:
            batch = OpeBatch.from_frame(part[contract])
        except OpeInputError as exc:
            yield _error(part, str(exc))
            return
        offset = np.uint64(offsets[int(part[FILE].iloc[0])])
        batch = dataclasses.replace(batch, keys=part[ROW].to_numpy(dtype=np.uint64) + offset)
        yield _partials_row(batch_partials(batch, chosen, n_bootstrap, seed), part)
        return
    ids = part["decision_id"].to_numpy()
    try:
        _check_contiguous(ids, 0)
    except OpeInputError as exc:
        yield _error(part, str(exc))
        return
    edge = _edges(ids)
    yield pd.DataFrame({"kind": ["edges"], "file": [int(part[FILE].iloc[0])],
                        "row": [int(part[ROW].iloc[0])],
                        "payload": [pickle.dumps(part[edge])]})  # fmt: skip
    inner = part[~edge].reset_index(drop=True)
    if not len(inner):
        return
    try:
        batch = OpeBatch.from_frame(inner[contract])
    except OpeInputError as exc:
        yield _error(inner, str(exc))
        return
    yield _partials_row(batch_partials(batch, chosen, n_bootstrap, seed), inner)


def reduce_partition(
    frames: Iterator[pd.DataFrame],
    *,
    chosen: Sequence[Estimator],
    offsets: Sequence[int],
    n_bootstrap: int,
    seed: int,
) -> Iterator[pd.DataFrame]:
    """A Spark partition (``mapInPandas``) to partials, piece by file piece."""
    batches = [f for f in frames if len(f)]
    if not batches:
        return
    frame = pd.concat(batches, ignore_index=True)
    starts = np.flatnonzero(np.r_[True, frame[FILE].to_numpy()[1:] != frame[FILE].to_numpy()[:-1]])
    for start, stop in zip(starts, np.r_[starts[1:], len(frame)], strict=True):
        part = frame.iloc[start:stop].sort_values(ROW, kind="stable").reset_index(drop=True)
        yield from reduce_piece(
            part, chosen=chosen, offsets=offsets, n_bootstrap=n_bootstrap, seed=seed
        )


def _raise_first_error(rows: list[Any], dataset: ParquetDataset) -> None:
    errors = sorted((r.file, r.row, r.payload.decode()) for r in rows if r.kind == "error")
    if errors:
        file, _, message = errors[0]
        raise OpeInputError(f"{dataset.files[file]}: {message}")


def _edge_partials(
    pieces: list[pd.DataFrame],
    dataset: ParquetDataset,
    chosen: Sequence[Estimator],
    n_bootstrap: int,
    seed: int,
) -> dict[str, Partial]:
    """The decisions at the pieces' edges, put back together in file order and reduced."""
    if not pieces:
        return {}
    edges = pd.concat(pieces, ignore_index=True).sort_values([FILE, ROW], kind="stable")
    files = edges.groupby("decision_id", sort=False)[FILE].nunique()
    if (files > 1).any():
        decision = files.index[files.to_numpy() > 1][0]
        spans = sorted(edges.loc[edges["decision_id"] == decision, FILE].unique())
        raise OpeInputError(
            f"decision_id {decision!r} continues from {dataset.files[spans[0]]} into "
            f"{dataset.files[spans[1]]}; rows of one decision must be in one file"
        )
    contract = [c for c in edges.columns if c not in (FILE, ROW)]
    edges = edges.reset_index(drop=True)
    try:
        _check_contiguous(edges["decision_id"].to_numpy(), 0)
        batch = OpeBatch.from_frame(edges[contract])
    except OpeInputError as exc:
        found = _AT_ROW.search(str(exc))
        at = int(found[1]) if found else 0
        text = _AT_ROW.sub(f"at row {int(edges[ROW].iloc[at])}", str(exc))
        raise OpeInputError(f"{dataset.files[int(edges[FILE].iloc[at])]}: {text}") from None
    return batch_partials(batch, chosen, n_bootstrap, seed)


def spark_partials(
    spark: SparkSession,
    dataset: ParquetDataset,
    chosen: Sequence[Estimator],
    *,
    n_bootstrap: int = 0,
    seed: int = 0,
) -> tuple[dict[str, Partial], int]:
    """Merged partials of every estimator in ``chosen`` that the dataset's columns allow, and
    the rows read: one Spark job over the dataset's partitions."""
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, int) or n_bootstrap < 0:
        raise ValueError(f"n_bootstrap must be a non-negative int; got {n_bootstrap!r}")
    chosen = list(chosen)
    offsets = list(dataset.offsets)

    def reduce(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        return reduce_partition(
            frames, chosen=chosen, offsets=offsets, n_bootstrap=n_bootstrap, seed=seed
        )

    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(ARROW_BATCH_ROWS))
    frame = read_dataset(spark, dataset, dataset.contract_columns)
    with quiet_pandas_warning():
        rows = frame.mapInPandas(reduce, RESULT_SCHEMA).collect()
    _raise_first_error(rows, dataset)
    ordered = sorted(rows, key=lambda r: (r.file, r.row))
    pieces = [pickle.loads(r.payload) for r in ordered if r.kind == "edges"]
    parts = [pickle.loads(r.payload) for r in ordered if r.kind == "partials"]
    parts.append(_edge_partials(pieces, dataset, chosen, n_bootstrap, seed))
    merged: dict[str, Partial] = {}
    for part in parts:
        for name, partial in part.items():
            merged[name] = partial if name not in merged else merged[name].merge(partial)
    logger.info("Spark reduced %d rows in %d pieces", dataset.n_rows, len(ordered))
    return merged, dataset.n_rows


def spark_estimates(
    spark: SparkSession,
    dataset: ParquetDataset,
    chosen: Sequence[Estimator],
    *,
    alpha: float = 0.05,
    interval: str = "normal",
    bounds: Bounds | None = None,
    n_bootstrap: int = 0,
    seed: int = 0,
) -> dict[str, Estimate]:
    """``ope.streaming.stream_estimates`` on Spark: the same estimates over the dataset."""
    boot = n_bootstrap if interval == "bootstrap" else 0
    if interval == "bootstrap" and boot < 1:
        raise ValueError("the bootstrap interval needs n_bootstrap > 0")
    merged, _ = spark_partials(spark, dataset, chosen, n_bootstrap=boot, seed=seed)
    return finish_all(merged, chosen, alpha=alpha, interval=interval, bounds=bounds)
