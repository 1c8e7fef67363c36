"""The agreement report: the table of every experiment's predicted and A/B lift, the summary of
``ope.ab_agreement``, and a matplotlib plot of predicted against A/B lift with both intervals,
as one self-contained HTML page."""

from __future__ import annotations

from typing import Any

import pandas as pd

from ope.ab_agreement import Agreement
from ope.html_parts import PAGE_STYLE, escaped, html_image, html_table
from ope.report_plots import new_figure, png_base64


def _overlap(row: Any) -> bool:
    return bool(row.predicted_lo <= row.observed_hi and row.observed_lo <= row.predicted_hi)


def agreement_plot(frame: pd.DataFrame) -> str:
    """Predicted (x) against A/B (y) lift, each with its interval, and the line y = x."""
    figure = new_figure(6.0, 5.0)
    axes = figure.add_subplot(1, 1, 1)
    rows = frame.dropna(subset=["predicted", "observed"])
    for row in rows.itertuples():
        colour = "tab:blue" if _overlap(row) else "tab:red"
        axes.errorbar(
            row.predicted, row.observed,
            xerr=[[row.predicted - row.predicted_lo], [row.predicted_hi - row.predicted]],
            yerr=[[row.observed - row.observed_lo], [row.observed_hi - row.observed]],
            fmt="o", color=colour, ecolor=colour, alpha=0.8, capsize=2,
        )  # fmt: skip
    if not rows.empty:
        points = pd.concat([rows["predicted"], rows["observed"]])
        low, high = float(points.min()), float(points.max())
        pad = 0.1 * (high - low or 1.0)
        axes.plot([low - pad, high + pad], [low - pad, high + pad], "--", color="grey")
    axes.axhline(0.0, color="lightgrey", linewidth=0.8)
    axes.axvline(0.0, color="lightgrey", linewidth=0.8)
    axes.set_xlabel("gate's predicted lift (OPE)")
    axes.set_ylabel("A/B lift")
    axes.set_title("offline against online (red: intervals do not overlap)")
    return png_base64(figure)


def _f(value: Any) -> str:
    return "" if value is None or pd.isna(value) else f"{value:+.4f}"


def table_rows(frame: pd.DataFrame) -> list[list[str]]:
    """One row per experiment and arm: predicted [lo, hi], A/B [lo, hi], overlap, SRM."""
    out = []
    for row in frame.itertuples():
        has = not pd.isna(row.predicted)
        out.append(
            [
                str(row.experiment),
                str(row.arm),
                f"{_f(row.predicted)} [{_f(row.predicted_lo)}, {_f(row.predicted_hi)}]"
                if has else "none",
                f"{_f(row.observed)} [{_f(row.observed_lo)}, {_f(row.observed_hi)}]",
                ("yes" if _overlap(row) else "no")
                if has else "",
                "FLAGGED" if row.srm_flagged else "ok",
            ]
        )  # fmt: skip
    return out


HEADER = ["experiment", "arm", "predicted lift [interval]", "A/B lift [interval]", "overlap",
          "SRM"]  # fmt: skip


def summary_lines(summary: Agreement) -> list[str]:
    level = round(100 * (1 - summary.alpha))
    return [
        f"experiments {summary.experiments}; compared (a gate prediction, no SRM flag) "
        f"{summary.with_prediction}; left out for SRM {summary.srm_flagged}",
        f"intervals overlap in {summary.overlap_share:.0%}",
        f"bias (predicted - A/B) {summary.bias:+.4f} [{summary.bias_lo:+.4f}, "
        f"{summary.bias_hi:+.4f}] ({level}%)",
        f"mean absolute error {summary.mean_abs_error:.4f}; "
        f"same sign {summary.same_sign_share:.0%}",
        f"A/B point inside the predicted interval {summary.observed_in_predicted_share:.0%}; "
        f"predicted point inside the A/B interval {summary.predicted_in_observed_share:.0%}",
    ]


def render_agreement_html(frame: pd.DataFrame, summary: Agreement) -> str:
    """The page: summary, plot, table."""
    items = "".join(f"<li>{escaped(line)}</li>" for line in summary_lines(summary))
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>A/B agreement</title>"
        f"<style>{PAGE_STYLE}</style></head>"
        "<body><h1>Offline-online agreement</h1>"
        f"<ul>{items}</ul>"
        f"{html_image(agreement_plot(frame), 'predicted against A/B lift')}"
        f"{html_table(HEADER, table_rows(frame))}</body></html>"
    )
