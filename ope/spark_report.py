"""The analyst's OPE report (``ope.report.build_report``) on Spark, over a Parquet dataset: the
same dict, number for number, as the in-process report of the dataset's rows in file order.

- estimates, diagnostics and each segment's estimates: one Spark job reducing every partition to
  partials for the whole and for each segment value (``ope.spark_estimate``);
- the weight histogram: the positive weights' range and the exact quantiles (Spark's
  ``percentile``, linear between order statistics as numpy's), then each partition's counts in
  the same log-spaced bins (``np.histogram`` in a pandas UDF), summed;
- the reward model's calibration: rows ranked by ``q_hat`` (ties in file order, as the stable
  sort in-process), cut into the same equal-count bins, each bin aggregated.

The quantiles and the ranking each gather their column on one executor: fine for the logs a
report is read on (millions of rows), not for billions.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ope.report import (
    CALIBRATION_BINS,
    MIN_SEGMENT_DECISIONS,
    SEGMENT_ESTIMATORS,
    WEIGHT_BINS,
    finite_or_none,
)
from ope.spark_dataset import ParquetDataset
from ope.spark_estimate import FILE, ROW, WHOLE, Reduction, read_dataset, spark_scoped_partials
from ope.spark_session import quiet_pandas_warning
from ope.streaming import finish_all
from ope.suite import estimators

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

QUANTILES = (0.5, 0.9, 0.99, 1.0)


def _edges(lo: float, hi: float, bins: int) -> np.ndarray:
    hi = hi if hi > lo else lo * 1.001 + 1e-12
    return np.geomspace(lo, hi, bins + 1)


def weight_histogram(frame: DataFrame, bins: int = WEIGHT_BINS) -> dict[str, Any]:
    """``ope.report.weight_histogram`` of the weights target_pscore / pscore of ``frame``."""
    from pyspark.sql import functions as sf

    weighted = frame.select((sf.col("target_pscore") / sf.col("pscore")).alias("w"))
    summary = weighted.agg(
        sf.min(sf.when(sf.col("w") > 0, sf.col("w"))).alias("lo"),
        sf.max(sf.when(sf.col("w") > 0, sf.col("w"))).alias("hi"),
        sf.sum((sf.col("w") == 0).cast("long")).alias("zero"),
        sf.percentile("w", sf.array(*[sf.lit(q) for q in QUANTILES])).alias("q"),
    ).first()
    counts: list[int] = []
    edges = np.array([])
    if summary["lo"] is not None:
        edges = _edges(float(summary["lo"]), float(summary["hi"]), bins)

        def count(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
            total = np.zeros(bins, dtype=np.int64)
            for part in frames:
                w = part["target_pscore"].to_numpy(np.float64) / part["pscore"].to_numpy(np.float64)
                total += np.histogram(w[w > 0], bins=edges)[0]
            yield pd.DataFrame({"bin": np.arange(bins), "count": total})

        with quiet_pandas_warning():
            parts = (
                frame.select("target_pscore", "pscore")
                .mapInPandas(count, "bin long, count long")
                .groupBy("bin")
                .agg(sf.sum("count").alias("count"))
                .orderBy("bin")
                .collect()
            )
        counts = [int(row["count"]) for row in parts]
    return {
        "edges": edges.tolist(),
        "counts": counts,
        "zero": int(summary["zero"]),
        "quantiles": {
            f"q{round(100 * q)}": float(v) for q, v in zip(QUANTILES, summary["q"], strict=True)
        },
    }


def _bin_of(rank: Any, n: int, bins: int) -> Any:
    """np.array_split's group of the row at ``rank``: the first n mod b groups hold one more."""
    from pyspark.sql import functions as sf

    small, extra = divmod(n, bins)
    wide = extra * (small + 1)
    return sf.when(rank < wide, sf.floor(rank / (small + 1))).otherwise(
        sf.lit(extra) + sf.floor((rank - wide) / max(small, 1))
    )


def calibration(frame: DataFrame, n: int, bins: int = CALIBRATION_BINS) -> dict[str, Any]:
    """``ope.report.calibration`` of ``frame``'s q_hat and reward (``n`` rows)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as sf

    bins = min(bins, n)
    order = Window.orderBy("q_hat", FILE, ROW)
    ranked = frame.select("q_hat", "reward", FILE, ROW).withColumn(
        "rank", sf.row_number().over(order) - 1
    )
    table = (
        ranked.withColumn("bin", _bin_of(sf.col("rank"), n, bins))
        .groupBy("bin")
        .agg(
            sf.count(sf.lit(1)).alias("rows"),
            sf.min("q_hat").alias("q_lo"),
            sf.max("q_hat").alias("q_hi"),
            sf.mean("q_hat").alias("mean_q_hat"),
            sf.mean("reward").alias("mean_reward"),
        )
        .orderBy("bin")
        .collect()
    )
    rows = [
        {
            "rows": int(r["rows"]),
            "q_lo": float(r["q_lo"]),
            "q_hi": float(r["q_hi"]),
            "mean_q_hat": float(r["mean_q_hat"]),
            "mean_reward": float(r["mean_reward"]),
        }
        for r in table
    ]
    whole = frame.agg(
        sf.mean((sf.col("q_hat") - sf.col("reward")) ** 2).alias("brier"),
        sf.mean("q_hat").alias("q"),
        sf.mean("reward").alias("r"),
    ).first()
    ece = sum(b["rows"] * abs(b["mean_reward"] - b["mean_q_hat"]) for b in rows) / n
    return {
        "bins": rows,
        "brier": float(whole["brier"]),
        "ece": float(ece),
        "mean_q_hat": float(whole["q"]),
        "mean_reward": float(whole["r"]),
    }


def _segments(scoped: dict, column: str, chosen: list, alpha: float) -> list[dict[str, Any]]:
    out = []
    for _, value in sorted(scope for scope in scoped if scope[0] == column):
        partials = scoped[(column, value)]
        ipw = partials["ipw"]
        entry: dict[str, Any] = {
            "value": value,
            "rows": ipw.weights.rows,
            "decisions": ipw.moments.n,
            "estimates": {},
        }
        if ipw.moments.n >= MIN_SEGMENT_DECISIONS:
            estimates = finish_all(partials, chosen, alpha=alpha)
            entry["estimates"] = {
                name: {"value": e.value, "lo": e.lo, "hi": e.hi}
                for name, e in estimates.items()
                if name in SEGMENT_ESTIMATORS
            }
        out.append(entry)
    return out


def spark_report(
    spark: SparkSession,
    dataset: ParquetDataset,
    *,
    segments: Sequence[str] = ("surface", "device"),
    alpha: float = 0.05,
    source: str = "",
    target: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``build_report`` of the dataset's rows, computed on Spark; raises ``OpeInputError``
    naming the file, column and row of bad input."""
    present = tuple(c for c in segments if c in dataset.columns)
    chosen = estimators()
    scoped = spark_scoped_partials(
        spark, dataset, Reduction(tuple(chosen), dataset.offsets, segments=present)
    )
    whole = scoped[WHOLE]
    estimates = finish_all(whole, chosen, alpha=alpha)
    stats = whole["ipw"].weights
    diagnostics = stats.diagnostics()
    diagnostics["max_weight_share"] = (
        stats.max_weight / stats.weight_sum if stats.weight_sum > 0 else math.inf
    )
    diagnostics["zero_target_rows"] = stats.zero_target
    columns = [*dataset.contract_columns]
    frame = read_dataset(spark, dataset, columns)
    report: dict[str, Any] = {
        "kind": "ope_report",
        "source": source,
        "target": target or {},
        "rows": stats.rows,
        "decisions": whole["ipw"].moments.n,
        "slots": whole["ipw"].slots,
        "alpha": alpha,
        "estimates": {name: e.as_dict() for name, e in estimates.items()},
        "diagnostics": diagnostics,
        "weights": weight_histogram(frame),
        "calibration": calibration(frame, stats.rows) if "q_hat" in columns else None,
        "segments": {column: _segments(scoped, column, chosen, alpha) for column in present},
        "segments_missing": [c for c in segments if c not in present],
    }
    return finite_or_none(report)
