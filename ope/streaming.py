"""Estimates over logs larger than memory: read the input contract in chunks that keep every
decision whole, reduce each chunk to mergeable partials, merge, finish.

Rows of one decision must be contiguous (the store and the exports write them so). A chunk
boundary that falls inside a decision carries that decision's rows to the next chunk; a decision
id that reappears after another decision within what is read is an error naming the row.
Because partials merge exactly (``ope.moments``), the streamed estimates and intervals equal the
in-memory ones, bootstrap included, up to floating-point summation order.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ope.batch import SLATE_PSCORES, OpeBatch, OpeInputError
from ope.estimators import Bounds, Estimate, Estimator, Partial

logger = logging.getLogger(__name__)

CHUNK_ROWS = 1_000_000
COLUMNS = (
    "reward",
    "pscore",
    "target_pscore",
    "decision_id",
    "slot",
    "q_hat",
    "v_hat",
    "v_hat_cascade",
    "behavior",
    *SLATE_PSCORES,
)


def _frames(path: Path, chunk_rows: int) -> Iterator[pd.DataFrame]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        parquet = pq.ParquetFile(path)
        names = [c for c in parquet.schema_arrow.names if c in COLUMNS]
        for record_batch in parquet.iter_batches(batch_size=chunk_rows, columns=names):
            yield record_batch.to_pandas()
    elif path.suffix == ".csv":
        yield from pd.read_csv(path, chunksize=chunk_rows)
    else:
        raise OpeInputError(f"input must be a .parquet or .csv file; got {path.name}")


def _check_contiguous(ids: np.ndarray, row_offset: int) -> None:
    codes = pd.factorize(ids)[0]
    starts = np.r_[True, codes[1:] != codes[:-1]]
    seen = np.bincount(codes[starts], minlength=int(codes.max()) + 1) if codes.size else codes
    if np.any(seen > 1):
        code = int(np.flatnonzero(seen > 1)[0])
        row = int(np.flatnonzero(starts & (codes == code))[1])
        raise OpeInputError(
            f"decision_id rows must be contiguous; {ids[row]!r} reappears at row {row + row_offset}"
        )


def read_batches(path: str | Path, *, chunk_rows: int = CHUNK_ROWS) -> Iterator[OpeBatch]:
    """OpeBatches of about ``chunk_rows`` rows from a Parquet or CSV file in the input contract,
    each holding whole decisions; errors name the column and the row in the whole file."""
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise ValueError(f"chunk_rows must be a positive int; got {chunk_rows!r}")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"input {path} does not exist")
    carry: pd.DataFrame | None = None
    offset = 0  # the first row of ``carry`` (or of the next frame) in the whole file
    columns: list[str] | None = None
    for frame in _frames(path, chunk_rows):
        if columns is None:
            columns = list(frame.columns)
        frame = frame if carry is None else pd.concat([carry, frame], ignore_index=True)
        carry = None
        if "decision_id" in frame.columns and len(frame):
            ids = frame["decision_id"].to_numpy()
            _check_contiguous(ids, offset)
            tail = int(np.flatnonzero(ids != ids[-1])[-1]) + 1 if np.any(ids != ids[-1]) else 0
            frame, carry = frame.iloc[:tail], frame.iloc[tail:].reset_index(drop=True)
        if len(frame):
            yield OpeBatch.from_frame(frame, row_offset=offset)
            offset += len(frame)
    if carry is not None and len(carry):
        yield OpeBatch.from_frame(carry, row_offset=offset)
    elif columns is None:
        raise OpeInputError(f"{path.name} has no rows")


def stream_partials(
    batches: Iterable[OpeBatch],
    chosen: Sequence[Estimator],
    *,
    n_bootstrap: int = 0,
    seed: int = 0,
) -> tuple[dict[str, Partial], int]:
    """Merged partials of every estimator in ``chosen`` that the first batch's columns allow,
    and the number of rows read. Later batches must have the same columns."""
    merged: dict[str, Partial] = {}
    active: list[Estimator] | None = None
    rows = 0
    for batch in batches:
        if active is None:
            active = [e for e in chosen if e.supports(batch)]
        for estimator in active:
            part = estimator.partial(batch, n_bootstrap=n_bootstrap, seed=seed)
            merged[estimator.name] = (
                part if estimator.name not in merged else merged[estimator.name].merge(part)
            )
        rows += batch.n_rows
    if active is None:
        raise OpeInputError("the input has no rows")
    return merged, rows


def stream_estimates(
    batches: Iterable[OpeBatch],
    chosen: Sequence[Estimator],
    *,
    alpha: float = 0.05,
    interval: str = "normal",
    bounds: Bounds | None = None,
    n_bootstrap: int = 0,
    seed: int = 0,
) -> dict[str, Estimate]:
    """Every estimator the columns allow, over batches read one at a time. With
    ``interval="bernstein"``, self-normalized estimators (no finite-sample bound here) give a t
    interval, and their ``Estimate.interval`` says so."""
    boot = n_bootstrap if interval == "bootstrap" else 0
    if interval == "bootstrap" and boot < 1:
        raise ValueError("the bootstrap interval needs n_bootstrap > 0")
    merged, rows = stream_partials(batches, chosen, n_bootstrap=boot, seed=seed)
    logger.info("estimated %d estimators over %d rows", len(merged), rows)
    return finish_all(merged, chosen, alpha=alpha, interval=interval, bounds=bounds)


def finish_all(
    partials: dict[str, Partial],
    chosen: Sequence[Estimator],
    *,
    alpha: float = 0.05,
    interval: str = "normal",
    bounds: Bounds | None = None,
) -> dict[str, Estimate]:
    """Estimates from merged partials, by name; a self-normalized estimator asked for a
    Bernstein interval gives a t interval (``Estimator.interval_for``)."""
    by_name = {e.name: e for e in chosen}
    return {
        name: by_name[name].finish(
            part, alpha=alpha, interval=by_name[name].interval_for(interval), bounds=bounds
        )
        for name, part in partials.items()
    }
