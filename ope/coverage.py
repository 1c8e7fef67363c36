"""Interval coverage over repeated logged runs whose true value is known.

For each repetition, a logged run (an ``OpeBatch``) and the exact value of the target policy on
the distribution the run was drawn from. Every estimator the batch's columns allow is reduced to
its partial once (with Poisson-bootstrap sums), then finished with every interval method, so
each (estimator, method) cell sees the same estimates. Per cell: the share of runs whose interval
covers the truth, and the mean width; per estimator: the bias (mean estimate − truth) and the
RMSE. A self-normalized or whole-slate estimator asked for a Bernstein interval gives a t interval
(``Estimator.interval_for``); ``fallback`` records those cells.

The runs themselves come from the caller (``loop.coverage_world`` draws them from the simulated
world): ``ope`` knows nothing of the world.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ope.batch import OpeBatch
from ope.estimators import N_BOOTSTRAP, Bounds, Estimator
from ope.intervals import INTERVALS, check_alpha
from ope.refit import INTERVAL as REFIT_INTERVAL
from ope.refit import RewardModelInputs, estimate_with_refit
from ope.streaming import finish_all, stream_partials


@dataclass(frozen=True)
class LoggedRun:
    """One repetition: the logged rows and the target's true value on their distribution;
    ``reward_model`` lets the refit bootstrap (``ope.refit``) refit the run's reward model."""

    batch: OpeBatch
    truth: float
    reward_model: RewardModelInputs | None = None


@dataclass
class CoverageResult:
    """Coverage, width, bias and RMSE per estimator (and interval method), over ``reps`` runs."""

    reps: int
    alpha: float
    truth: float
    coverage: dict[str, dict[str, float]]
    width: dict[str, dict[str, float]]
    bias: dict[str, float]
    rmse: dict[str, float]
    fallback: dict[str, dict[str, str]] = field(default_factory=dict)
    config: dict[str, float | int | str] = field(default_factory=dict)

    def as_json(self) -> dict[str, object]:
        return {
            "reps": self.reps,
            "alpha": self.alpha,
            "truth": self.truth,
            "coverage": self.coverage,
            "width": self.width,
            "bias": self.bias,
            "rmse": self.rmse,
            "fallback": self.fallback,
            "config": self.config,
        }


@dataclass
class _Cell:
    covered: int = 0
    widths: list[float] = field(default_factory=list)


def measure_coverage(
    runs: Iterable[LoggedRun],
    chosen: Sequence[Estimator],
    *,
    intervals: Sequence[str] = INTERVALS,
    alpha: float = 0.05,
    n_bootstrap: int = N_BOOTSTRAP,
    bounds: Bounds | None = None,
    seed: int = 0,
    refit_bootstrap: int = 0,
) -> CoverageResult:
    """Coverage of every (estimator, interval) over ``runs``.

    Args:
        runs: the repetitions; estimators run where the first run's columns allow.
        chosen: the estimators.
        intervals: interval methods (``ope.intervals.INTERVALS``).
        alpha: 1 − the nominal coverage.
        n_bootstrap: Poisson-bootstrap replicates per run.
        bounds: what the Bernstein interval assumes (default rewards in [0, 1]).
        seed: the bootstrap seed of run r is ``seed + r``.
        refit_bootstrap: replicates of the bootstrap that refits the reward model (0: off);
            adds a ``bootstrap-refit`` cell for DM and the doubly robust family, on runs that
            carry ``reward_model``.
    """
    alpha = check_alpha(alpha)
    unknown = [i for i in intervals if i not in INTERVALS]
    if unknown:
        raise ValueError(f"intervals must be among {', '.join(INTERVALS)}; got {unknown}")
    cells: dict[tuple[str, str], _Cell] = {}
    errors: dict[str, list[float]] = {}
    fallback: dict[str, dict[str, str]] = {}
    truths: list[float] = []
    names: list[str] | None = None
    for r, run in enumerate(runs):
        if not math.isfinite(run.truth):
            raise ValueError(f"run {r} has a non-finite truth {run.truth}")
        boot = n_bootstrap if "bootstrap" in intervals else 0
        partials, _ = stream_partials([run.batch], chosen, n_bootstrap=boot, seed=seed + r)
        if names is None:
            names = list(partials)
        truths.append(run.truth)
        for interval in intervals:
            estimates = finish_all(
                {n: partials[n] for n in names}, chosen, alpha=alpha, interval=interval,
                bounds=bounds,
            )  # fmt: skip
            for name, estimate in estimates.items():
                cell = cells.setdefault((name, interval), _Cell())
                cell.covered += int(estimate.lo <= run.truth <= estimate.hi)
                cell.widths.append(estimate.hi - estimate.lo)
                if estimate.interval != interval:
                    fallback.setdefault(name, {})[interval] = estimate.interval
                if interval == intervals[0]:
                    errors.setdefault(name, []).append(estimate.value - run.truth)
        if refit_bootstrap and run.reward_model is not None:
            inputs = run.reward_model
            refitted = estimate_with_refit(
                run.batch, design=inputs.design, action=inputs.action, target=inputs.target,
                model=inputs.model, n_folds=inputs.n_folds, n_bootstrap=refit_bootstrap,
                alpha=alpha, seed=seed + r,
            )  # fmt: skip
            for name, estimate in refitted.items():
                cell = cells.setdefault((name, REFIT_INTERVAL), _Cell())
                cell.covered += int(estimate.lo <= run.truth <= estimate.hi)
                cell.widths.append(estimate.hi - estimate.lo)
    if names is None:
        raise ValueError("coverage needs at least one run")
    reps = len(truths)
    methods = [*intervals, REFIT_INTERVAL]
    present = {n: [i for i in methods if (n, i) in cells] for n in names}
    return CoverageResult(
        reps=reps,
        alpha=alpha,
        truth=float(np.mean(truths)),
        coverage={
            n: {i: cells[(n, i)].covered / len(cells[(n, i)].widths) for i in present[n]}
            for n in names
        },
        width={n: {i: float(np.mean(cells[(n, i)].widths)) for i in present[n]} for n in names},
        bias={n: float(np.mean(errors[n])) for n in names},
        rmse={n: float(np.sqrt(np.mean(np.square(errors[n])))) for n in names},
        fallback=fallback,
    )


def coverage_table(result: CoverageResult) -> str:
    """A terminal table: one row per estimator, coverage and mean width per interval method."""
    methods = list(dict.fromkeys(m for row in result.coverage.values() for m in row))
    level = round(100 * (1 - result.alpha))
    head = f"{'estimator':<11}" + "".join(f"{m:>17}" for m in methods)
    head += f"{'bias':>10}{'rmse':>9}"
    lines = [
        f"coverage of {level}% intervals over {result.reps} runs (truth {result.truth:.4f}); "
        "cells: share covering the truth / mean width",
        head,
        "-" * len(head),
    ]
    for name, row in result.coverage.items():
        cells = ""
        for m in methods:
            if m not in row:
                cells += f"{'-':>17}"
                continue
            mark = "*" if m in result.fallback.get(name, {}) else " "
            cells += f"{row[m]:>9.3f}{mark}/{result.width[name][m]:<6.3f}"
        lines.append(
            f"{name:<11}{cells}{result.bias[name]:>10.4f}{result.rmse[name]:>9.4f}".rstrip()
        )
    if result.fallback:
        lines.append("* a t interval: the estimator offers no Bernstein bound")
    return "\n".join(lines)
