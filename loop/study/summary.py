"""The loop study's figures over seeds: per arm and metric, the mean with its 95% Student-t
interval by round, in the last round and over the whole run; each arm's paired difference from
the reference arm (greedy) over the same seeds; and how the off-policy estimates made before each
round compared with that round's true value.

Two metrics are relative to the oracle arm on the same seed and round: homogenization (the mean
pairwise Jaccard similarity of what members consumed, minus the oracle's; Chaney, Stewart &
Engelhardt, RecSys 2018) and popularity lift (the mean standardized log popularity prior of the
shown titles, minus the oracle's).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import numpy as np

from loop.study.config import GATE_MARGINS, ORACLE_ARM, REFERENCE_ARM, StudyConfig
from loop.study.metrics import mean_interval
from loop.study.run import ArmRun

METRICS: dict[str, tuple[str, str]] = {
    "true_reward": ("true reward per decision (expected plays)", "higher"),
    "regret": ("regret per decision against the oracle", "lower"),
    "coverage": ("catalog coverage (share of available titles shown)", "higher"),
    "exposure_gini": ("Gini coefficient of title exposure", "lower"),
    "homogenization": ("pairwise Jaccard of consumption minus the oracle's", "lower"),
    "popularity_lift": ("popularity prior of shown titles minus the oracle's", "lower"),
    "new_title_exposure": ("exposure share of titles released during the run", "higher"),
    "new_title_plays": ("plays of titles released during the run, per decision", "higher"),
    "exploration_cost": ("realized exploration cost: true reward lost against greedy", "budget"),
    "plays_search": ("search-found plays per decision", "lower"),
}  # fmt: skip
"""Metric name → (what it is, which way is better)."""

CUMULATIVE: dict[str, str] = {
    "regret": "cumulative regret (expected plays lost over the run)",
    "true_reward": "true reward per decision over the run",
    "coverage": "titles shown at least once over the run",
    "exposure_gini": "exposure Gini over the run",
    "homogenization": "homogenization at the end",
    "popularity_lift": "popularity lift over the run",
    "new_title_exposure": "exposure share of new titles over the run",
    "exploration_cost": "realized exploration cost, rounds 1 on",
}


def _interval(values: Sequence[float]) -> dict[str, float]:
    mean, lo, hi = mean_interval(np.asarray(values, dtype=np.float64))
    return {"mean": mean, "lo": lo, "hi": hi, "n": int(np.sum(~np.isnan(values)))}


def _relative_to_oracle(runs: dict[tuple[int, str], ArmRun]) -> None:
    """Add homogenization and popularity lift to every round and to the whole run."""
    for (seed, _), run in runs.items():
        oracle = runs[seed, ORACLE_ARM]
        for mine, ref in zip(run.rounds, oracle.rounds, strict=True):
            mine["homogenization"] = mine["jaccard"] - ref["jaccard"]
            mine["popularity_lift"] = mine["popularity_lean"] - ref["popularity_lean"]
        run.cumulative["homogenization"] = run.cumulative["jaccard"] - oracle.cumulative["jaccard"]
        run.cumulative["popularity_lift"] = (
            run.cumulative["popularity_lean"] - oracle.cumulative["popularity_lean"]
        )


def _ope(runs: list[ArmRun]) -> dict[str, Any]:
    """Per estimator, over every (seed, round ≥ 1) of an arm: the estimate made before the round
    against the candidate's true value on the same held-out decisions: interval coverage, bias,
    RMSE, median relative error and mean width; the primary estimate's verdicts; and the gate
    (``ope.gate``: READY needs a reliable primary lift whose lower bound clears the margin, and
    every weight check) against the true lift, at each of ``GATE_MARGINS``."""
    rows: dict[str, list[tuple[float, float, float, float]]] = {}
    unsupported: list[float] = []
    reliable: list[bool] = []
    gates: list[tuple[float, dict[str, bool]]] = []
    for run in runs:
        for r in run.rounds:
            ope = r.get("ope")
            if not ope or "truth" not in ope:
                continue
            if ope.get("unsupported") is not None:
                unsupported.append(ope["unsupported"])
            for name, e in ope["estimates"].items():
                rows.setdefault(name, []).append((e["value"], e["lo"], e["hi"], ope["truth"]))
            reliable.append(bool(ope["primary"]["reliable"]))
            gates.append((ope["truth"] - ope["production_truth"], ope["gate"]))
    out: dict[str, Any] = {}
    for name, values in rows.items():
        v = np.asarray(values, dtype=np.float64)
        error = v[:, 0] - v[:, 3]
        out[name] = {
            "n": int(v.shape[0]),
            "coverage": float(np.mean((v[:, 1] <= v[:, 3]) & (v[:, 3] <= v[:, 2]))),
            "bias": float(error.mean()),
            "rmse": float(math.sqrt(np.mean(error**2))),
            "median_relative_error": float(np.median(np.abs(error) / np.abs(v[:, 3]))),
            "mean_width": float(np.mean(v[:, 2] - v[:, 1])),
        }
    return {
        "estimators": out,
        "unsupported": float(np.mean(unsupported)) if unsupported else None,
        "reliable_share": float(np.mean(reliable)) if reliable else None,
        "gate": [_gate_rates(gates, margin) for margin in GATE_MARGINS],
    }


def _gate_rates(gates: list[tuple[float, dict[str, bool]]], margin: float) -> dict[str, Any]:
    """READY rates at ``margin`` among candidates truly not better by it, and among those
    truly better by twice it."""
    ready = [(truth, decided[str(margin)]) for truth, decided in gates]
    not_better = [r for truth, r in ready if truth <= margin]
    better = [r for truth, r in ready if truth >= 2 * margin]
    return {
        "margin": margin,
        "not_better": len(not_better),
        "false_ready": float(np.mean(not_better)) if not_better else None,
        "better_by_twice": len(better),
        "power": float(np.mean(better)) if better else None,
    }


def summarize(config: StudyConfig, runs: list[ArmRun]) -> dict[str, Any]:
    """The study's JSON document (see the module docstring); ``runs`` as ``run_study`` returns
    them, the oracle arm included."""
    by_key = {(run.seed, run.arm): run for run in runs}
    _relative_to_oracle(by_key)
    seeds, arms = config.seed_list, list(config.arms_run)

    def series(arm: str, metric: str, rnd: int | None) -> list[float]:
        runs_of = [by_key[s, arm] for s in seeds]
        if rnd is None:
            return [float(run.cumulative[metric]) for run in runs_of]
        return [float(run.rounds[rnd][metric]) for run in runs_of]

    last = config.rounds - 1
    by_round = {
        arm: {m: [_interval(series(arm, m, r)) for r in range(config.rounds)] for m in METRICS}
        for arm in arms
    }
    last_round = {arm: {m: _interval(series(arm, m, last)) for m in METRICS} for arm in arms}
    cumulative = {arm: {m: _interval(series(arm, m, None)) for m in CUMULATIVE} for arm in arms}
    paired: dict[str, Any] = {"last_round": {}, "cumulative": {}}
    if REFERENCE_ARM in arms:
        for arm in arms:
            if arm == REFERENCE_ARM:
                continue
            paired["last_round"][arm] = {
                m: _interval(np.subtract(series(arm, m, last), series(REFERENCE_ARM, m, last)))
                for m in METRICS
            }
            paired["cumulative"][arm] = {
                m: _interval(np.subtract(series(arm, m, None), series(REFERENCE_ARM, m, None)))
                for m in CUMULATIVE
            }
    config_json = {k: v for k, v in asdict(config).items() if k != "world"}
    return {
        "config": config_json | {"world": asdict(config.world), "arms_run": arms},
        "metrics": {
            m: {"label": label, "better": better} for m, (label, better) in METRICS.items()
        },
        "cumulative_metrics": CUMULATIVE,
        "reference_arm": REFERENCE_ARM if REFERENCE_ARM in arms else None,
        "by_round": by_round,
        "last_round": last_round,
        "cumulative": cumulative,
        "paired": paired,
        "ope": {arm: _ope([by_key[s, arm] for s in seeds]) for arm in arms if arm != ORACLE_ARM},
        "runs": [asdict(run) for run in runs],
    }
