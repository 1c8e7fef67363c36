"""The loop study's page: one self-contained HTML file with the last-round and whole-run tables,
each arm's paired difference from greedy, the off-policy estimates' record, and a plot per
metric (the metric by round: a line for each arm's mean over seeds and a band for its 95%
interval). The page's parts are ``ope``'s (``ope.report_html``, ``ope.report_plots``)."""

from __future__ import annotations

import math
from typing import Any

from ope.html_parts import PAGE_STYLE, escaped, html_image, html_table
from ope.report_plots import new_figure, png_base64


def _cell(x: dict[str, float]) -> str:
    if math.isnan(x["mean"]):
        return "-"
    if math.isnan(x["lo"]):
        return f"{x['mean']:.4g}"
    return f"{x['mean']:.4g} [{x['lo']:.4g}, {x['hi']:.4g}]"


def metric_plot(study: dict[str, Any], metric: str) -> str:
    """One metric by round for every arm: mean over seeds, with its 95% band (base64 PNG)."""
    figure = new_figure(6.0, 3.2)
    axes = figure.add_subplot(1, 1, 1)
    for arm, metrics in study["by_round"].items():
        points = metrics[metric]
        rounds = list(range(len(points)))
        mean = [p["mean"] for p in points]
        line = axes.plot(rounds, mean, marker="o", markersize=3, label=arm)[0]
        lo, hi = [p["lo"] for p in points], [p["hi"] for p in points]
        axes.fill_between(rounds, lo, hi, color=line.get_color(), alpha=0.15, linewidth=0)
    axes.set_xlabel("round")
    axes.set_title(study["metrics"][metric]["label"], fontsize=9)
    axes.legend(fontsize=7)
    return png_base64(figure)


def _rows(table: dict[str, dict[str, dict[str, float]]], metrics: list[str]) -> list[list[Any]]:
    return [[arm, *(_cell(values[m]) for m in metrics)] for arm, values in table.items()]


def render_study_html(study: dict[str, Any]) -> str:
    """The whole page for ``loop.study.summary.summarize``'s document."""
    config = study["config"]
    metrics = list(study["metrics"])
    cumulative = list(study["cumulative_metrics"])
    n_seeds = config["seeds"]
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>loopbreak loop study</title>",
        f"<style>{PAGE_STYLE}</style></head><body>",
        "<h1>The loop study</h1>",
        f"<p>{n_seeds} seeds, {config['rounds']} rounds of {config['decisions']} decisions, "
        f"slates of {config['k']}, exploration budget {config['budget']:g}, search weight "
        f"α {config['search_weight']:g}. Mean over seeds with its 95% interval.</p>",
        html_table(["setting", "value"], [[k, v] for k, v in config.items() if k != "world"]),
        "<h2>Last round</h2>",
        html_table(["arm", *metrics], _rows(study["last_round"], metrics)),
        "<h2>Over the whole run</h2>",
        html_table(["arm", *cumulative], _rows(study["cumulative"], cumulative)),
    ]
    if study["reference_arm"]:
        reference = escaped(study["reference_arm"])
        parts += [
            f"<h2>Paired difference from {reference} (same seeds)</h2><h3>Last round</h3>",
            html_table(["arm", *metrics], _rows(study["paired"]["last_round"], metrics)),
            "<h3>Over the whole run</h3>",
            html_table(["arm", *cumulative], _rows(study["paired"]["cumulative"], cumulative)),
        ]
    parts.append(
        "<h2>Off-policy estimates made before each round, against the truth on the same "
        "decisions</h2>"
    )
    ope_rows = [
        [
            arm, name, e["n"], e["coverage"], e["median_relative_error"], e["bias"], e["rmse"],
            e["mean_width"],
        ]
        for arm, record in study["ope"].items()
        for name, e in record["estimators"].items()
    ]  # fmt: skip
    header = ["arm", "estimator", "n", "coverage", "median rel. error", "bias", "RMSE", "width"]
    parts.append(html_table(header, ope_rows))
    gate_rows = [
        [
            arm, record["reliable_share"], g["margin"], g["not_better"], g["false_ready"],
            g["better_by_twice"], g["power"],
        ]
        for arm, record in study["ope"].items()
        for g in record["gate"]
    ]  # fmt: skip
    parts += [
        "<h3>The primary estimate's verdict and the gate against the true lift</h3>",
        html_table(
            ["arm", "primary reliable", "margin", "not better", "READY among them",
             "better by 2x margin", "READY among them"],
            gate_rows,
        ),
    ]  # fmt: skip
    parts.append("<h2>By round</h2>")
    parts += [html_image(metric_plot(study, m), study["metrics"][m]["label"]) for m in metrics]
    parts.append("</body></html>")
    return "\n".join(parts)
