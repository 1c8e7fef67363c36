"""The decision the OPE report and the gate lead with, as text and as HTML: the candidate against
production (value, lift and their intervals), reliable or not and why, the warnings, the log
window and when the evaluation was made. It renders the JSON record of an evaluation
(``loop.ope_eval.Evaluation.record``), so the report, the gate and the stored row say the same.
"""

from __future__ import annotations

from typing import Any

from ope.html_parts import escaped, html_table


def _interval(entry: dict[str, Any], signed: bool = False) -> str:
    value, lo, hi = entry.get("value"), entry.get("lo"), entry.get("hi")

    def number(x: float | None) -> str:
        if x is None:
            return "unbounded"
        return f"{x:+.4f}" if signed else f"{x:.4f}"

    return f"{number(value)} [{number(lo)}, {number(hi)}]"


def _rows(record: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(what, value [interval], estimator, verdict) for the candidate, production and the lift."""
    out = []
    for label, primary, signed in (
        (f"candidate {record['candidate']['name']}", record["candidate"]["primary"], False),
        (f"baseline {record['baseline']['name']}", record["baseline"]["primary"], False),
        ("lift", record["lift"], True),
    ):
        verdict = "reliable" if primary["reliable"] else "NOT RELIABLE"
        out.append((label, _interval(primary, signed), primary["estimator"], verdict))
    return out


def warnings(record: dict[str, Any]) -> list[str]:
    """Every reason the candidate's estimate or the lift is not reliable, plus the support and
    training-window facts an analyst should see even when they pass."""
    out: list[str] = []
    for reason in record["lift"]["reasons"]:
        if reason != "every check passed":
            out.append(f"lift: {reason}")
    for reason in record["candidate"]["primary"]["reasons"]:
        if reason != "every check passed" and not reason.startswith("target: "):
            out.append(f"candidate: {reason}")
    support = record["candidate"]["support"]
    if support.get("unsupported_share"):
        out.append(
            f"candidate: {100 * support['unsupported_share']:.1f}% of its slate is outside the "
            f"logging support; the outcome model alone puts {support['model_only'] or 0:.4f} "
            "there, and the interval spans every value it could take"
        )
    overlap = record.get("training_overlap")
    if overlap:
        out.append(f"evaluated on its own training data (forced): {overlap}")
    return out


def decision_lines(record: dict[str, Any]) -> list[str]:
    """The decision as terminal lines."""
    window = record["window"]
    level = round(100 * (1 - record["alpha"]))
    lines = [
        f"log window {window['first_decision']} to {window['last_decision']} "
        f"({window['decisions']} decisions); evaluated {record['made_at']}",
        f"{'':<28}{f'value [{level}% interval]':<36}{'estimator':<22}verdict",
    ]
    for label, interval, estimator, verdict in _rows(record):
        lines.append(f"{label:<28}{interval:<36}{estimator:<22}{verdict}")
    found = warnings(record)
    lines.append("warnings:" if found else "warnings: none")
    lines += [f"  - {text}" for text in found]
    return lines


def decision_html(record: dict[str, Any]) -> str:
    """The decision as the report's first HTML section."""
    window = record["window"]
    level = round(100 * (1 - record["alpha"]))
    found = warnings(record)
    items = "".join(f"<li>{escaped(text)}</li>" for text in found) or "<li>none</li>"
    return "".join(
        [
            "<h2>Decision</h2>",
            f"<p>Log window {escaped(window['first_decision'])} to "
            f"{escaped(window['last_decision'])} ({window['decisions']} decisions); evaluated "
            f"{escaped(record['made_at'])}.</p>",
            html_table(
                ["", f"value [{level}% interval]", "estimator", "verdict"],
                [list(row) for row in _rows(record)],
            ),
            f"<h3>Warnings</h3><ul>{items}</ul>",
        ]
    )
