"""The analyst's OPE report as data: estimates with intervals per estimator, the weight
distribution and its diagnostics, the reward model's calibration, and a breakdown by segment.

``build_report`` turns rows in the input contract (DESIGN.md §5; plus optional segment columns
such as ``surface`` and ``device``) into a JSON-ready dict, the report's JSON twin.
``report_table`` renders it for the terminal, leading with the decision when the report comes
from a log replay (``ope.report_decision``); ``ope.report_html`` renders it as one
self-contained HTML file with the plots of ``ope.report_plots``. The report holds the whole
input in memory (for logs larger than memory, ``loopbreak ope estimate`` streams).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ope.batch import OpeBatch, OpeInputError
from ope.estimators import Estimate
from ope.report_decision import decision_lines
from ope.suite import estimate_all

CALIBRATION_BINS = 10
WEIGHT_BINS = 30
SEGMENT_ESTIMATORS = ("ipw", "snipw", "dr")
MIN_SEGMENT_DECISIONS = 2


def finite_or_none(value: Any) -> Any:
    """``value`` with non-finite floats replaced by None, recursively (JSON has no inf/NaN)."""
    if isinstance(value, dict):
        return {str(k): finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def weight_histogram(weight: np.ndarray, bins: int = WEIGHT_BINS) -> dict[str, Any]:
    """Counts of the positive weights in ``bins`` log-spaced bins, the zero weights apart, and
    quantiles of all weights."""
    positive = weight[weight > 0]
    if positive.size:
        lo, hi = float(positive.min()), float(positive.max())
        hi = hi if hi > lo else lo * 1.001 + 1e-12
        edges = np.geomspace(lo, hi, bins + 1)
        counts, _ = np.histogram(positive, bins=edges)
    else:
        edges, counts = np.array([]), np.array([], dtype=np.int64)
    quantiles = (0.5, 0.9, 0.99, 1.0)
    return {
        "edges": edges.tolist(),
        "counts": counts.tolist(),
        "zero": int(np.sum(weight == 0)),
        "quantiles": {f"q{round(100 * q)}": float(np.quantile(weight, q)) for q in quantiles},
    }


def calibration(q_hat: np.ndarray, reward: np.ndarray, bins: int = CALIBRATION_BINS) -> dict:
    """Reliability table of the reward model: rows grouped in ``bins`` bins of equal count by
    q_hat, each with its mean q_hat and mean observed reward; the Brier score and the expected
    calibration error Σ_b (n_b / n) |mean reward_b − mean q_hat_b|."""
    order = np.argsort(q_hat, kind="stable")
    groups = [g for g in np.array_split(order, min(bins, q_hat.size)) if g.size]
    table = [
        {
            "rows": int(g.size),
            "q_lo": float(q_hat[g].min()),
            "q_hi": float(q_hat[g].max()),
            "mean_q_hat": float(q_hat[g].mean()),
            "mean_reward": float(reward[g].mean()),
        }
        for g in groups
    ]
    ece = sum(b["rows"] * abs(b["mean_reward"] - b["mean_q_hat"]) for b in table) / q_hat.size
    return {
        "bins": table,
        "brier": float(np.mean((q_hat - reward) ** 2)),
        "ece": float(ece),
        "mean_q_hat": float(q_hat.mean()),
        "mean_reward": float(reward.mean()),
    }


def _estimate_dict(estimate: Estimate) -> dict[str, Any]:
    return estimate.as_dict()


def _segment_rows(frame: pd.DataFrame, column: str, alpha: float) -> list[dict[str, Any]]:
    out = []
    values = frame[column].astype(object).where(frame[column].notna(), "(missing)")
    for value, rows in frame.groupby(values, sort=True).groups.items():
        sub = frame.loc[rows]
        batch = OpeBatch.from_frame(sub.reset_index(drop=True))
        entry: dict[str, Any] = {
            "value": str(value),
            "rows": len(sub),
            "decisions": batch.n_decisions,
        }
        if batch.n_decisions >= MIN_SEGMENT_DECISIONS:
            estimates = estimate_all(batch, alpha=alpha)
            entry["estimates"] = {
                name: {"value": e.value, "lo": e.lo, "hi": e.hi}
                for name, e in estimates.items()
                if name in SEGMENT_ESTIMATORS
            }
        else:
            entry["estimates"] = {}
        out.append(entry)
    return out


def build_report(
    frame: pd.DataFrame,
    *,
    segments: Sequence[str] = ("surface", "device"),
    alpha: float = 0.05,
    source: str = "",
    target: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The report of rows in the input contract; ``segments`` present in ``frame`` are broken
    down. Raises OpeInputError naming the column and row of bad input."""
    batch = OpeBatch.from_frame(frame)
    estimates = estimate_all(batch, alpha=alpha)
    stats = batch.weight_stats
    diagnostics = stats.diagnostics()
    diagnostics["max_weight_share"] = (
        stats.max_weight / stats.weight_sum if stats.weight_sum > 0 else math.inf
    )
    diagnostics["zero_target_rows"] = stats.zero_target
    missing = [c for c in segments if c not in frame.columns]
    present = [c for c in segments if c in frame.columns]
    report: dict[str, Any] = {
        "kind": "ope_report",
        "source": source,
        "target": target or {},
        "rows": batch.n_rows,
        "decisions": batch.n_decisions,
        "slots": batch.n_slots,
        "alpha": alpha,
        "estimates": {name: _estimate_dict(e) for name, e in estimates.items()},
        "diagnostics": diagnostics,
        "weights": weight_histogram(batch.weight),
        "calibration": None,
        "segments": {column: _segment_rows(frame, column, alpha) for column in present},
        "segments_missing": missing,
    }
    if batch.q_hat is not None:
        report["calibration"] = calibration(batch.q_hat, batch.reward)
    return finite_or_none(report)


def _number(value: float | None, width: int = 10, digits: int = 4) -> str:
    return f"{value:>{width}.{digits}f}" if value is not None else f"{'-':>{width}}"


def _lead(report: dict[str, Any]) -> list[str]:
    """The decision (a log replay), or the primary estimate (rows from a file), then a rule."""
    if report.get("decision"):
        return [*decision_lines(report["decision"]), "-" * 60]
    primary = report.get("primary")
    if not primary:
        return []
    because = "; ".join(primary["reasons"])
    return [
        f"primary estimate {primary['value']:.4f} [{primary['lo']:.4f}, {primary['hi']:.4f}] "
        f"by {primary['estimator']}: {primary['verdict']} ({because}; the logging policy's "
        "support is unknown for rows from a file)",
        "-" * 60,
    ]


def report_table(report: dict[str, Any]) -> str:
    """The report as a terminal table: estimates, diagnostics, calibration, segments."""
    level = round(100 * (1 - report["alpha"]))
    d = report["diagnostics"]
    lines = [
        *_lead(report),
        f"{report['decisions']} decisions, {report['rows']} rows"
        + (f" from {report['source']}" if report["source"] else ""),
        f"weights: ess {d['ess']:.1f}, max {d['max_weight']:.3g} "
        f"({100 * (d['max_weight_share'] or 0):.2f}% of the sum), mean {d['mean_weight']:.3f}, "
        f"target 0 on {100 * d['zero_target_share']:.1f}% of rows",
        f"{'estimator':<12}{'value':>10}{f'{level}% lo':>10}{f'{level}% hi':>10}",
    ]
    for name, e in report["estimates"].items():
        lines.append(f"{name:<12}{_number(e['value'])}{_number(e['lo'])}{_number(e['hi'])}")
    cal = report["calibration"]
    if cal is not None:
        lines.append(
            f"reward model: brier {cal['brier']:.4f}, ece {cal['ece']:.4f}, mean q_hat "
            f"{cal['mean_q_hat']:.4f} vs mean reward {cal['mean_reward']:.4f}"
        )
    for column, rows in report["segments"].items():
        lines.append(f"by {column}:")
        for entry in rows:
            shown = "  ".join(
                f"{name} {_number(v['value'], 0)} [{_number(v['lo'], 0)}, {_number(v['hi'], 0)}]"
                for name, v in entry["estimates"].items()
            )
            lines.append(f"  {entry['value']:<14}{entry['decisions']:>7} decisions  {shown}")
    return "\n".join(lines)


def check_segments(frame: pd.DataFrame, segments: Sequence[str]) -> None:
    """Raise OpeInputError for segment columns the input lacks."""
    missing = [c for c in segments if c not in frame.columns]
    if missing:
        raise OpeInputError(f"segment column(s) {', '.join(missing)} not in the input")
