"""The OPE report's plots as base64 PNG strings, drawn from the report's data (``ope.report``).

matplotlib is imported inside each function, with the Agg canvas and no pyplot state, so
importing ``ope`` stays light and nothing needs a display.
"""

from __future__ import annotations

import base64
import io
import itertools
from typing import Any


def new_figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def png_base64(figure: Any) -> str:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _intervals(axes: Any, labels: list[str], rows: list[dict[str, Any]]) -> None:
    """One point with its interval per row, top to bottom."""
    for y, row in enumerate(rows):
        value, lo, hi = row.get("value"), row.get("lo"), row.get("hi")
        if value is None:
            continue
        if lo is not None and hi is not None:
            axes.plot([lo, hi], [y, y], color="tab:blue", linewidth=2)
        axes.plot([value], [y], "o", color="tab:blue")
    axes.set_yticks(range(len(labels)))
    axes.set_yticklabels(labels)
    axes.invert_yaxis()
    axes.grid(axis="x", alpha=0.3)


def forest_plot(estimates: dict[str, dict[str, Any]], level: int) -> str:
    """Each estimator's value with its interval."""
    figure = new_figure(6.5, 0.45 * len(estimates) + 1.2)
    axes = figure.add_subplot()
    _intervals(axes, list(estimates), list(estimates.values()))
    axes.set_xlabel(f"estimated value per decision ({level}% interval)")
    return png_base64(figure)


def weight_plot(histogram: dict[str, Any]) -> str:
    """Histogram of the positive importance weights on log axes; the zero weights in the title."""
    figure = new_figure(6.5, 3.2)
    axes = figure.add_subplot()
    edges, counts = histogram["edges"], histogram["counts"]
    if counts:
        widths = [b - a for a, b in itertools.pairwise(edges)]
        axes.bar(edges[:-1], counts, width=widths, align="edge", color="tab:blue", alpha=0.8)
        axes.set_xscale("log")
        axes.set_yscale("log")
    axes.set_xlabel("importance weight target_pscore / pscore")
    axes.set_ylabel("rows")
    axes.set_title(f"{histogram['zero']} rows with weight 0 not shown", fontsize=9)
    return png_base64(figure)


def calibration_plot(table: list[dict[str, Any]]) -> str:
    """Mean observed reward against mean q_hat per bin, with the diagonal."""
    figure = new_figure(4.5, 4.0)
    axes = figure.add_subplot()
    x = [b["mean_q_hat"] for b in table]
    y = [b["mean_reward"] for b in table]
    top = max(max(x), max(y)) * 1.05 or 1.0
    axes.plot([0, top], [0, top], color="grey", linestyle="--", linewidth=1)
    axes.plot(x, y, "o-", color="tab:orange")
    axes.set_xlabel("mean q_hat in bin")
    axes.set_ylabel("mean observed reward in bin")
    return png_base64(figure)


def segment_plot(column: str, rows: list[dict[str, Any]], estimator: str, level: int) -> str:
    """One estimator's value with its interval per segment value."""
    shown = [r for r in rows if estimator in r["estimates"]]
    figure = new_figure(6.5, 0.45 * len(shown) + 1.2)
    axes = figure.add_subplot()
    _intervals(axes, [r["value"] for r in shown], [r["estimates"][estimator] for r in shown])
    axes.set_xlabel(f"{estimator} by {column} ({level}% interval)")
    return png_base64(figure)
