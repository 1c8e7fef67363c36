"""Timing helpers shared by the benchmarks: repeated wall-clock samples and their quantiles."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np


def sample_microseconds(fn: Callable[[], object], *, repeats: int, warmup: int = 20) -> np.ndarray:
    """Wall-clock microseconds of ``repeats`` calls of ``fn`` after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    out = np.empty(repeats)
    for j in range(repeats):
        start = time.perf_counter_ns()
        fn()
        out[j] = (time.perf_counter_ns() - start) / 1000.0
    return out


def summary(samples_us: np.ndarray) -> dict[str, float]:
    """Median and 99th percentile in microseconds."""
    return {
        "p50_us": float(np.median(samples_us)),
        "p99_us": float(np.quantile(samples_us, 0.99)),
    }
