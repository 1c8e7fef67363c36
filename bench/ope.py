"""``loopbreak bench ope``: our estimators against obp 0.4.1 on the same million decisions, and a
log ten times larger streamed from Parquet in bounded memory; with ``--engine spark``, Spark
beside the in-process streaming path on the same Parquet files (``bench.ope_spark``).

The problem: n decisions over 10 actions, softmax logging and target policies, binary rewards
and a noisy reward model q̂. obp takes the dense (n, actions, 1) arrays; ours takes the per-row
contract (reward, pscore, target_pscore, q_hat, v_hat), which is what a log holds once replay
has given the target propensities. Both sides run IPS, SNIPS, DM, DR, SNDR, DRos (λ = 1) and
Switch-DR (τ = 1).

- ``ours_s``: all seven point estimates with their 95% normal intervals and diagnostics.
- ``obp_s``: obp's seven ``estimate_policy_value`` calls (obp has no analytic interval; its
  ``estimate_interval`` is a bootstrap, timed separately below).
- ``bootstrap``: both sides' bootstrap intervals for IPS with the same number of resamples, on
  a tenth of the rows (obp resamples with ``np.random.choice``; ours is the Poisson bootstrap).
- ``streamed``: a Parquet file of ``streamed_rows`` rows estimated chunk by chunk, with its peak
  resident memory (the process's high-water mark, so it includes everything before it).
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.ope_problem import make_problem
from bench.ope_spark import DEFAULT_SIZES, run_spark, table_spark


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows", type=int, default=1_000_000, help="decisions compared with obp")
    parser.add_argument(
        "--streamed-rows",
        type=int,
        default=10_000_000,
        help="rows of the streamed Parquet log (0 skips it)",
    )
    parser.add_argument("--bootstrap", type=int, default=100, help="resamples in both bootstraps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--engine",
        choices=("in-process", "spark"),
        default="in-process",
        help="in-process: ours against obp (default); spark: Spark beside the in-process "
        "streaming path on the same Parquet files, at each of --sizes (bench.ope_spark)",
    )
    parser.add_argument(
        "--sizes",
        type=lambda text: tuple(int(float(x)) for x in text.split(",")),
        default=DEFAULT_SIZES,
        help="--engine spark: dataset sizes in rows, comma-separated (default "
        f"{','.join(str(s) for s in DEFAULT_SIZES)}; e.g. 1e6,3e6,1e7)",
    )
    parser.add_argument("--master", help="--engine spark: Spark master URL (default local[2])")


def _ours(problem: dict[str, np.ndarray]) -> tuple[float, dict[str, float]]:
    from ope import OpeBatch, estimate_all

    start = time.perf_counter()
    batch = OpeBatch.from_arrays(
        reward=problem["reward"],
        pscore=problem["pscore"],
        target_pscore=problem["target_pscore"],
        q_hat=problem["q_hat"],
        v_hat=problem["v_hat"],
    )
    estimates = estimate_all(batch)
    elapsed = time.perf_counter() - start
    return elapsed, {name: e.value for name, e in estimates.items()}


def _obp(problem: dict[str, np.ndarray]) -> tuple[float, dict[str, float]]:
    n = problem["reward"].size
    position = np.zeros(n, dtype=int)
    from ope.obp_reference import obp_counterparts

    estimators = obp_counterparts()
    start = time.perf_counter()
    values = {
        name: float(
            e.estimate_policy_value(
                reward=problem["reward"],
                action=problem["action"],
                position=position,
                pscore=problem["pscore"],
                action_dist=problem["action_dist"],
                estimated_rewards_by_reg_model=problem["q_dense"],
            )
        )
        for name, e in estimators.items()
    }
    return time.perf_counter() - start, values


def _bootstrap(problem: dict[str, np.ndarray], n_bootstrap: int, seed: int) -> dict[str, float]:
    from obp.ope import InverseProbabilityWeighting

    from ope import IPS, OpeBatch

    n = problem["reward"].size
    batch = OpeBatch.from_arrays(
        reward=problem["reward"], pscore=problem["pscore"], target_pscore=problem["target_pscore"]
    )
    start = time.perf_counter()
    IPS().estimate(batch, interval="bootstrap", n_bootstrap=n_bootstrap, seed=seed)
    ours = time.perf_counter() - start
    start = time.perf_counter()
    InverseProbabilityWeighting().estimate_interval(
        reward=problem["reward"],
        action=problem["action"],
        position=np.zeros(n, dtype=int),
        pscore=problem["pscore"],
        action_dist=problem["action_dist"],
        n_bootstrap_samples=n_bootstrap,
        random_state=seed,
    )
    theirs = time.perf_counter() - start
    return {"rows": n, "n_bootstrap": n_bootstrap, "ours_s": ours, "obp_s": theirs,
            "speedup": theirs / ours}  # fmt: skip


def _streamed(rows: int, seed: int) -> dict[str, float]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ope import estimators, read_batches, stream_estimates

    chunk = 1_000_000
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "log.parquet"
        start = time.perf_counter()
        writer = None
        for j, begin in enumerate(range(0, rows, chunk)):
            part = make_problem(min(chunk, rows - begin), seed + 1 + j)
            table = pa.table({k: part[k] for k in ("reward", "pscore", "target_pscore",
                                                   "q_hat", "v_hat")})  # fmt: skip
            writer = writer or pq.ParquetWriter(path, table.schema)
            writer.write_table(table)
        if writer is not None:
            writer.close()
        write_s = time.perf_counter() - start
        start = time.perf_counter()
        estimates = stream_estimates(read_batches(path, chunk_rows=chunk), estimators())
        elapsed = time.perf_counter() - start
        size_mb = path.stat().st_size / 1e6
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return {
        "rows": rows,
        "file_mb": size_mb,
        "write_s": write_s,
        "estimate_s": elapsed,
        "rows_per_s": rows / elapsed,
        "peak_rss_mb": peak_mb,
        "ipw": estimates["ipw"].value,
    }


def run(
    *,
    rows: int = 1_000_000,
    streamed_rows: int = 10_000_000,
    bootstrap: int = 100,
    seed: int = 0,
    engine: str = "in-process",
    sizes: tuple[int, ...] = DEFAULT_SIZES,
    master: str | None = None,
) -> dict[str, Any]:
    if engine == "spark":
        return run_spark(sizes=sizes, master=master, seed=seed)
    problem = make_problem(rows, seed)
    _ours(make_problem(1000, seed + 99))  # warm imports on both sides
    _obp(make_problem(1000, seed + 99))
    ours_s, ours = _ours(problem)
    obp_s, theirs = _obp(problem)
    diffs = {name: abs(ours[name] - obp) / max(abs(obp), 1e-300) for name, obp in theirs.items()}
    small = {k: v[: max(rows // 10, 1)] for k, v in problem.items()}
    result: dict[str, Any] = {
        "rows": rows,
        "ours_s": ours_s,
        "obp_s": obp_s,
        "speedup": obp_s / ours_s,
        "max_rel_diff": max(diffs.values()),
        "values": {name: {"ours": ours[name], "obp": obp} for name, obp in theirs.items()},
        "bootstrap": _bootstrap(small, bootstrap, seed),
    }
    if streamed_rows > 0:
        result["streamed"] = _streamed(streamed_rows, seed)
    return result


def table(result: dict[str, Any]) -> str:
    if result.get("kind") == "ope_spark":
        return table_spark(result)
    lines = [
        f"{result['rows']:,} decisions, 7 estimators (obp names: dr-os = dros)",
        f"{'estimator':<12}{'ours':>12}{'obp 0.4.1':>12}{'rel diff':>11}",
    ]
    for name, v in result["values"].items():
        rel = abs(v["ours"] - v["obp"]) / max(abs(v["obp"]), 1e-300)
        lines.append(f"{name:<12}{v['ours']:>12.6f}{v['obp']:>12.6f}{rel:>11.1e}")
    lines += [
        f"ours (with 95% normal intervals): {result['ours_s']:.3f} s; "
        f"obp (point estimates only): {result['obp_s']:.3f} s; speedup {result['speedup']:.1f}x",
    ]
    b = result["bootstrap"]
    lines.append(
        f"bootstrap IPS interval, {b['rows']:,} rows x {b['n_bootstrap']} resamples: ours "
        f"{b['ours_s']:.3f} s, obp {b['obp_s']:.3f} s, speedup {b['speedup']:.1f}x"
    )
    if "streamed" in result:
        s = result["streamed"]
        lines.append(
            f"streamed {s['rows']:,} rows from a {s['file_mb']:.0f} MB Parquet file: "
            f"{s['estimate_s']:.1f} s ({s['rows_per_s'] / 1e6:.2f} M rows/s), "
            f"peak RSS {s['peak_rss_mb']:.0f} MB"
        )
    return "\n".join(lines)
