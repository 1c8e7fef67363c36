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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

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


Scope = tuple[str, str]
"""("", "") for the whole dataset, (column, value) for a segment of it."""
WHOLE: Scope = ("", "")
Scoped = dict[Scope, dict[str, Partial]]
MISSING_SEGMENT = "(missing)"


@dataclass(frozen=True)
class Reduction:
    """What every task reduces with: the estimators, each file's first row in the dataset (the
    keys of rows without ``decision_id``), the bootstrap, and the segment columns."""

    chosen: tuple[Estimator, ...]
    offsets: tuple[int, ...]
    n_bootstrap: int = 0
    seed: int = 0
    segments: tuple[str, ...] = ()


def _payload_row(kind: str, payload: object, part: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"kind": [kind], "file": [int(part[FILE].iloc[0])],
                         "row": [int(part[ROW].iloc[0])],
                         "payload": [pickle.dumps(payload)]})  # fmt: skip


def batch_partials(
    batch: OpeBatch, chosen: Sequence[Estimator], n_bootstrap: int, seed: int
) -> dict[str, Partial]:
    """Every estimator's partial that the batch's columns allow."""
    return {
        e.name: e.partial(batch, n_bootstrap=n_bootstrap, seed=seed)
        for e in chosen
        if e.supports(batch)
    }


def segment_values(column: pd.Series) -> pd.Series:
    """A segment column's values, missing ones named as the in-process report names them."""
    return column.astype(object).where(column.notna(), MISSING_SEGMENT)


def frame_partials(
    frame: pd.DataFrame, reduction: Reduction, keys: np.ndarray | None = None
) -> Scoped:
    """The partials of whole decisions in ``frame``, for the whole and for each segment value
    (segments without the bootstrap: the report gives them normal intervals)."""
    batch = OpeBatch.from_frame(frame)
    if keys is not None:
        batch = dataclasses.replace(batch, keys=keys)
    chosen = reduction.chosen
    out: Scoped = {WHOLE: batch_partials(batch, chosen, reduction.n_bootstrap, reduction.seed)}
    for column in reduction.segments:
        groups = frame.groupby(segment_values(frame[column]), sort=False).indices
        for value, rows in groups.items():
            sub = OpeBatch.from_frame(frame.iloc[rows].reset_index(drop=True))
            out[(column, str(value))] = batch_partials(sub, chosen, 0, 0)
    return out


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


def reduce_piece(part: pd.DataFrame, reduction: Reduction) -> Iterator[pd.DataFrame]:
    """One file's rows in one partition, in file order, to partials (and edge rows)."""
    data = part.drop(columns=[FILE, ROW])
    if "decision_id" not in part.columns:
        offset = np.uint64(reduction.offsets[int(part[FILE].iloc[0])])
        try:
            scoped = frame_partials(data, reduction, part[ROW].to_numpy(dtype=np.uint64) + offset)
        except OpeInputError as exc:
            yield _error(part, str(exc))
            return
        yield _payload_row("partials", scoped, part)
        return
    ids = part["decision_id"].to_numpy()
    try:
        _check_contiguous(ids, 0)
    except OpeInputError as exc:
        yield _error(part, str(exc))
        return
    edge = _edges(ids)
    yield _payload_row("edges", part[edge], part)
    inner = part[~edge].reset_index(drop=True)
    if not len(inner):
        return
    try:
        scoped = frame_partials(inner.drop(columns=[FILE, ROW]), reduction)
    except OpeInputError as exc:
        yield _error(inner, str(exc))
        return
    yield _payload_row("partials", scoped, inner)


def reduce_partition(
    frames: Iterator[pd.DataFrame], reduction: Reduction
) -> Iterator[pd.DataFrame]:
    """A Spark partition (``mapInPandas``) to partials, piece by file piece."""
    batches = [f for f in frames if len(f)]
    if not batches:
        return
    frame = pd.concat(batches, ignore_index=True)
    files = frame[FILE].to_numpy()
    starts = np.flatnonzero(np.r_[True, files[1:] != files[:-1]])
    for start, stop in zip(starts, np.r_[starts[1:], len(frame)], strict=True):
        part = frame.iloc[start:stop]
        if not part[ROW].is_monotonic_increasing:
            part = part.sort_values(ROW, kind="stable")
        yield from reduce_piece(part.reset_index(drop=True), reduction)


def _raise_first_error(rows: list[Any], dataset: ParquetDataset) -> None:
    errors = sorted((r.file, r.row, r.payload.decode()) for r in rows if r.kind == "error")
    if errors:
        file, _, message = errors[0]
        raise OpeInputError(f"{dataset.files[file]}: {message}")


def _edge_partials(
    pieces: list[pd.DataFrame], dataset: ParquetDataset, reduction: Reduction
) -> Scoped:
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
    edges = edges.reset_index(drop=True)
    try:
        _check_contiguous(edges["decision_id"].to_numpy(), 0)
        return frame_partials(edges.drop(columns=[FILE, ROW]), reduction)
    except OpeInputError as exc:
        found = _AT_ROW.search(str(exc))
        at = int(found[1]) if found else 0
        text = _AT_ROW.sub(f"at row {int(edges[ROW].iloc[at])}", str(exc))
        raise OpeInputError(f"{dataset.files[int(edges[FILE].iloc[at])]}: {text}") from None


def merge_scoped(parts: Sequence[Scoped]) -> Scoped:
    merged: Scoped = {}
    for part in parts:
        for scope, partials in part.items():
            into = merged.setdefault(scope, {})
            for name, partial in partials.items():
                into[name] = partial if name not in into else into[name].merge(partial)
    return merged


def spark_scoped_partials(
    spark: SparkSession, dataset: ParquetDataset, reduction: Reduction
) -> Scoped:
    """Merged partials of the whole dataset and of each segment value: one Spark job."""
    n_bootstrap = reduction.n_bootstrap
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, int) or n_bootstrap < 0:
        raise ValueError(f"n_bootstrap must be a non-negative int; got {n_bootstrap!r}")
    missing = [c for c in reduction.segments if c not in dataset.columns]
    if missing:
        raise OpeInputError(f"segment column(s) {', '.join(missing)} not in the input")

    def reduce(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        return reduce_partition(frames, reduction)

    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(ARROW_BATCH_ROWS))
    columns = [*dataset.contract_columns, *reduction.segments]
    frame = read_dataset(spark, dataset, list(dict.fromkeys(columns)))
    with quiet_pandas_warning():
        rows = frame.mapInPandas(reduce, RESULT_SCHEMA).collect()
    _raise_first_error(rows, dataset)
    ordered = sorted(rows, key=lambda r: (r.file, r.row))
    pieces = [pickle.loads(r.payload) for r in ordered if r.kind == "edges"]
    parts = [pickle.loads(r.payload) for r in ordered if r.kind == "partials"]
    parts.append(_edge_partials(pieces, dataset, reduction))
    logger.info("Spark reduced %d rows in %d pieces", dataset.n_rows, len(ordered))
    return merge_scoped(parts)


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
    reduction = Reduction(tuple(chosen), dataset.offsets, n_bootstrap, seed)
    return spark_scoped_partials(spark, dataset, reduction).get(WHOLE, {}), dataset.n_rows


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
