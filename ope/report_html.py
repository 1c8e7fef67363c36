"""The OPE report as one self-contained HTML file: every table from the report's data, every
plot embedded as a base64 PNG (``ope.report_plots``), every piece of text escaped."""

from __future__ import annotations

from typing import Any

from ope import report_plots
from ope.html_parts import PAGE_STYLE, cell, escaped, html_image, html_table
from ope.report_decision import decision_html

__all__ = ["PAGE_STYLE", "escaped", "html_image", "html_table", "render_html"]


def render_html(report: dict[str, Any]) -> str:
    """The whole report page."""
    level = round(100 * (1 - report["alpha"]))
    estimates = report["estimates"]
    d = report["diagnostics"]
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>OPE report {escaped(report['source'])}</title>",
        f"<style>{PAGE_STYLE}</style></head><body>",
        "<h1>Off-policy evaluation report</h1>",
        f"<p>{report['decisions']} decisions, {report['rows']} rows"
        + (f" from {escaped(report['source'])}" if report["source"] else "")
        + "</p>",
    ]
    if report.get("decision"):
        parts.append(decision_html(report["decision"]))
    if report["target"]:
        parts.append(html_table(["target", "value"], [[k, v] for k, v in report["target"].items()]))
    parts += [
        f"<h2>Estimates with {level}% intervals</h2>",
        html_table(
            ["estimator", "value", "lo", "hi", "interval", "ess", "max weight"],
            [
                [name, e["value"], e["lo"], e["hi"], e["interval"], e["ess"], e["max_weight"]]
                for name, e in estimates.items()
            ],
        ),
        html_image(report_plots.forest_plot(estimates, level), "estimates with intervals"),
        "<h2>Importance weights</h2>",
        html_table(
            ["diagnostic", "value"],
            [
                ["effective sample size", d["ess"]],
                ["largest weight", d["max_weight"]],
                ["largest weight's share of the sum", d["max_weight_share"]],
                ["mean weight (should be close to 1)", d["mean_weight"]],
                ["share of rows with zero target propensity", d["zero_target_share"]],
            ]
            + [[k, v] for k, v in report["weights"]["quantiles"].items()],
        ),
        html_image(report_plots.weight_plot(report["weights"]), "weight distribution"),
        "<h2>Reward model calibration</h2>",
    ]
    calibration = report["calibration"]
    if calibration is None:
        parts.append("<p>The input has no q_hat column: no reward model to calibrate.</p>")
    else:
        parts += [
            f"<p>Brier score {cell(calibration['brier'])}, expected calibration error "
            f"{cell(calibration['ece'])}.</p>",
            html_table(
                ["bin", "rows", "q_hat from", "q_hat to", "mean q_hat", "mean reward"],
                [
                    [i, b["rows"], b["q_lo"], b["q_hi"], b["mean_q_hat"], b["mean_reward"]]
                    for i, b in enumerate(calibration["bins"])
                ],
            ),
            html_image(report_plots.calibration_plot(calibration["bins"]), "calibration"),
        ]
    parts.append("<h2>By segment</h2>")
    if not report["segments"]:
        parts.append("<p>The input has no segment columns.</p>")
    for column, rows in report["segments"].items():
        names = sorted({name for r in rows for name in r["estimates"]})
        table_rows = [
            [r["value"], r["decisions"]]
            + [
                f"{cell(r['estimates'][n]['value'])} [{cell(r['estimates'][n]['lo'])}, "
                f"{cell(r['estimates'][n]['hi'])}]"
                if n in r["estimates"]
                else None
                for n in names
            ]
            for r in rows
        ]
        parts += [
            f"<h3>{escaped(column)}</h3>",
            html_table([column, "decisions", *names], table_rows),
        ]
        main = "snipw" if "snipw" in names else (names[0] if names else None)
        if main is not None:
            plot = report_plots.segment_plot(column, rows, main, level)
            parts.append(html_image(plot, f"{main} by {column}"))
    parts.append("</body></html>")
    return "\n".join(parts)
