"""``loopbreak bench ope --engine spark``: the seven estimators with their intervals and weight
diagnostics over the same Parquet files, through Spark and through the in-process streaming
path, at several sizes.

For each size n: a dataset of n rows in files of at most a million rows (like day partitions),
made by ``bench.ope_problem.make_problem`` (softmax logging and target policies over 10 actions,
binary rewards, a noisy reward model). Both engines read every file and give all seven estimates
with 95% normal intervals; ``max_rel_diff`` says how far apart their numbers are (they are the same
estimator, summed in another order). Files are written in row groups of 100,000 rows, the unit
Spark splits them by. Spark's session is started (and a first small job run) before any timing;
each engine runs twice at each size and the faster run counts, the time of a job on a running
cluster (``spark_first_s`` keeps Spark's first, which pays for starting Python workers). Rows
per second are n over the estimating time; ``spark_over_in_process`` > 1 means Spark took
longer.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

FILE_ROWS = 1_000_000
GROUP_ROWS = 100_000
"""Rows per Parquet row group: the unit Spark splits a file into partitions by."""
REPEATS = 2
DEFAULT_SIZES = (100_000, 1_000_000, 3_000_000)
COLUMNS = ("reward", "pscore", "target_pscore", "q_hat", "v_hat")


def write_dataset(root: Path, rows: int, seed: int) -> list[Path]:
    """``rows`` logged rows in files of at most ``FILE_ROWS``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from bench.ope_problem import make_problem

    files = []
    for j, begin in enumerate(range(0, rows, FILE_ROWS)):
        part = make_problem(min(FILE_ROWS, rows - begin), seed + 1 + j)
        path = root / f"day={j:04d}" / "part-0.parquet"
        path.parent.mkdir(parents=True)
        pq.write_table(pa.table({k: part[k] for k in COLUMNS}), path, row_group_size=GROUP_ROWS)
        files.append(path)
    return files


def _max_rel_diff(a: dict[str, Any], b: dict[str, Any]) -> float:
    diffs = [
        abs(getattr(b[name], key) - getattr(e, key)) / max(abs(getattr(e, key)), 1e-300)
        for name, e in a.items()
        for key in ("value", "lo", "hi")
    ]
    diffs += [
        abs(b[name].diagnostics[k] - v) / max(abs(v), 1e-300)
        for name, e in a.items()
        for k, v in e.diagnostics.items()
    ]
    return float(max(diffs))


def _one_size(spark: Any, rows: int, seed: int) -> dict[str, Any]:
    from ope import estimators
    from ope.spark_dataset import dataset_batches, open_dataset
    from ope.spark_estimate import spark_partials
    from ope.streaming import finish_all, stream_partials

    chosen = estimators()
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        write_dataset(Path(tmp), rows, seed)
        write_s = time.perf_counter() - start
        dataset = open_dataset(tmp)
        in_process, spark_times = [], []
        for _ in range(REPEATS):
            start = time.perf_counter()
            local = finish_all(stream_partials(dataset_batches(dataset), chosen)[0], chosen)
            in_process.append(time.perf_counter() - start)
            start = time.perf_counter()
            distributed = finish_all(spark_partials(spark, dataset, chosen)[0], chosen)
            spark_times.append(time.perf_counter() - start)
        in_process_s, spark_s = min(in_process), min(spark_times)
        size_mb = sum(f.stat().st_size for f in dataset.files) / 1e6
    return {
        "rows": rows,
        "files": len(dataset.files),
        "dataset_mb": size_mb,
        "write_s": write_s,
        "in_process_s": in_process_s,
        "spark_s": spark_s,
        "spark_first_s": spark_times[0],
        "in_process_rows_per_s": rows / in_process_s,
        "spark_rows_per_s": rows / spark_s,
        "spark_over_in_process": spark_s / in_process_s,
        "max_rel_diff": _max_rel_diff(local, distributed),
        "ipw": local["ipw"].value,
    }


def run_spark(*, sizes: tuple[int, ...], master: str | None, seed: int) -> dict[str, Any]:
    """Both engines at each size (see the module docstring)."""
    from ope.spark_session import DEFAULT_MASTER, spark_session

    sizes = tuple(int(s) for s in sizes)
    if not sizes or min(sizes) < 1:
        raise ValueError(f"--sizes must be positive row counts; got {sizes}")
    master = master or DEFAULT_MASTER
    start = time.perf_counter()
    spark = spark_session(master, app_name="loopbreak-bench")
    _one_size(spark, 10_000, seed + 1000)  # a first job: Python workers and code generation
    start_s = time.perf_counter() - start
    results = [_one_size(spark, rows, seed) for rows in sizes]
    small, large = results[0], results[-1]
    growth = large["rows"] / small["rows"]
    return {
        "kind": "ope_spark",
        "master": master,
        "cores": spark.sparkContext.defaultParallelism,
        "spark_start_s": start_s,
        "sizes": results,
        "growth": {
            "rows": growth,
            "in_process_time": large["in_process_s"] / small["in_process_s"],
            "spark_time": large["spark_s"] / small["spark_s"],
        },
        "max_rel_diff": max(r["max_rel_diff"] for r in results),
    }


def table_spark(result: dict[str, Any]) -> str:
    lines = [
        f"7 estimators with 95% normal intervals over the same Parquet files; Spark on "
        f"{result['master']} ({result['cores']} cores), started in {result['spark_start_s']:.1f} "
        "s (not in the times)",
        f"{'rows':>12}{'files':>7}{'MB':>8}{'in-process s':>14}{'spark s':>10}"
        f"{'in-proc M rows/s':>18}{'spark M rows/s':>16}{'spark/in-proc':>15}{'max rel diff':>14}",
    ]
    for r in result["sizes"]:
        lines.append(
            f"{r['rows']:>12,}{r['files']:>7}{r['dataset_mb']:>8.0f}{r['in_process_s']:>14.2f}"
            f"{r['spark_s']:>10.2f}{r['in_process_rows_per_s'] / 1e6:>18.2f}"
            f"{r['spark_rows_per_s'] / 1e6:>16.2f}{r['spark_over_in_process']:>15.2f}"
            f"{r['max_rel_diff']:>14.1e}"
        )
    g = result["growth"]
    lines.append(
        f"from the smallest to the largest size ({g['rows']:.0f}x the rows): in-process time "
        f"x{g['in_process_time']:.1f}, Spark time x{g['spark_time']:.1f}"
    )
    return "\n".join(lines)
