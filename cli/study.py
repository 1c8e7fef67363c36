"""``loopbreak study``: the loop study on the simulated world, its tables on the terminal, and
``study.json`` and ``study.html`` in ``--out``.

The options' defaults are ``StudyConfig``'s and ``WorldConfig``'s; the study is ``loop.study``.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from cli.common import CommandInputError, add_json, config_option, default_of, fail
from loop.study.config import BUILT_IN_ARMS, StudyConfig
from sim.config import WorldConfig

COLUMNS: dict[str, str] = {
    "true_reward": "reward",
    "regret": "regret",
    "coverage": "coverage",
    "exposure_gini": "gini",
    "homogenization": "homogen.",
    "popularity_lift": "pop lift",
    "new_title_exposure": "new share",
    "exploration_cost": "expl cost",
}
"""The terminal's columns: metric → heading (the page and the JSON have every metric)."""


def _arms(text: str) -> tuple[str, ...]:
    return tuple(a.strip() for a in text.split(",") if a.strip())


def add_parser(sub: Any) -> None:
    study = sub.add_parser(
        "study", help="measure how far loopbreak breaks the feedback loop, against greedy"
    )
    study.add_argument("--out", default="out/study", help="output folder (default: out/study)")
    study.add_argument(
        "--arms",
        type=_arms,
        default=",".join(default_of(StudyConfig, "arms")),  # argparse parses a text default
        help=f"comma-separated arms: {', '.join(BUILT_IN_ARMS)}, or explore:<family> / "
        "loopbreak:<family> for any exploration family (default: %(default)s)",
    )
    config_option(study, "--seeds", StudyConfig, help="worlds, each run by every arm")
    config_option(study, "--first-seed", StudyConfig)
    config_option(study, "--rounds", StudyConfig, help="rounds, each retraining every arm")
    config_option(study, "--decisions", StudyConfig, help="decisions per round")
    config_option(study, "--k", StudyConfig, help="slate size")
    config_option(study, "--budget", StudyConfig, help="exploration budget, share of plays")
    config_option(study, "--pool", StudyConfig, help="exploration pool (top M)")
    config_option(study, "--search-weight", StudyConfig, help="α of search-found plays")
    config_option(study, "--holdout-share", StudyConfig)
    config_option(study, "--workers", StudyConfig, help="processes")
    config_option(study, "--items", WorldConfig, "n_items", "catalog size of the world")
    config_option(study, "--users", WorldConfig, "n_users", "members of the world")
    config_option(
        study, "--popularity-feedback", WorldConfig, help="social proof of the world (0: none)"
    )
    add_json(study)
    study.set_defaults(func=run)


def config_from(args: argparse.Namespace) -> StudyConfig:
    try:
        return StudyConfig(
            seeds=args.seeds,
            first_seed=args.first_seed,
            rounds=args.rounds,
            decisions=args.decisions,
            k=args.k,
            budget=args.budget,
            pool=args.pool,
            search_weight=args.search_weight,
            holdout_share=args.holdout_share,
            arms=args.arms,
            workers=args.workers,
            world=WorldConfig(
                n_items=args.items,
                n_users=args.users,
                popularity_feedback=args.popularity_feedback,
            ),
        )
    except ValueError as exc:
        raise CommandInputError(str(exc)) from None


def _pm(x: dict[str, float]) -> str:
    if math.isnan(x["mean"]):
        return "-"
    half = (x["hi"] - x["lo"]) / 2.0 if not math.isnan(x["lo"]) else math.nan
    digits = 1 if abs(x["mean"]) >= 100 else 3
    return f"{x['mean']:.{digits}f}±{half:.{digits}f}"


def table(title: str, rows: dict[str, dict[str, dict[str, float]]]) -> str:
    """One line per arm: each column's mean ± the half-width of its 95% interval."""
    names = [m for m in COLUMNS if any(m in metrics for metrics in rows.values())]
    lines = [title, f"{'arm':<22}" + "".join(f"{COLUMNS[m]:>16}" for m in names)]
    for arm, metrics in rows.items():
        cells = "".join(f"{_pm(metrics[m]) if m in metrics else '-':>16}" for m in names)
        lines.append(f"{arm:<22}{cells}")
    return "\n".join(lines)


def render(study: dict[str, Any]) -> str:
    """The terminal report: last round and whole run, then the paired differences."""
    c = study["config"]
    parts = [
        f"loopbreak study: {c['seeds']} seeds x {c['rounds']} rounds x {c['decisions']} "
        f"decisions, K={c['k']}, budget {c['budget']:g}, α {c['search_weight']:g} "
        "(mean ± 95% interval half-width over seeds)",
        table("last round", study["last_round"]),
        table("whole run (regret: expected plays lost in total)", study["cumulative"]),
    ]
    reference = study["reference_arm"]
    if reference:
        paired = study["paired"]
        parts.append(table(f"last round, paired difference from {reference}", paired["last_round"]))
        parts.append(table(f"whole run, paired difference from {reference}", paired["cumulative"]))
    parts += _ope_lines(study)
    return "\n\n".join(parts)


SHOWN_ESTIMATORS = ("primary", "ipw", "snipw", "dm", "dr", "cascade-dr", "aips")
"""The estimators the terminal report shows (study.json and study.html hold every one)."""


def _ope_lines(study: dict[str, Any]) -> list[str]:
    """The off-policy record: each estimator against the candidate's true value on the same
    held-out decisions, the primary estimate's verdicts, and the gate against the true lift."""
    rows = [
        f"{arm:<12}{name:<12} coverage {e['coverage']:.2f}  median rel. error "
        f"{e['median_relative_error']:.3f}  bias {e['bias']:+.3f}  width {e['mean_width']:.3f}  "
        f"({e['n']})"
        for arm, record in study["ope"].items()
        for name, e in record["estimators"].items()
        if name in SHOWN_ESTIMATORS
    ]
    if not rows:
        return []
    gates = []
    for arm, record in study["ope"].items():
        share = record["reliable_share"]
        gates.append(
            f"{arm:<12}primary reliable in {100 * (share or 0):.0f}% of rounds; gate: "
            + "; ".join(
                f"margin {g['margin']:g}: READY {_rate(g['false_ready'])} of {g['not_better']} "
                f"not better, {_rate(g['power'])} of {g['better_by_twice']} better by 2x"
                for g in record["gate"]
            )
        )
    title = "off-policy estimates made before each round, against the truth on the same decisions"
    return ["\n".join([title, *rows]), "\n".join(gates)]


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from loop.study.report import render_study_html
    from loop.study.run import run_study
    from loop.study.summary import summarize

    try:
        config = config_from(args)
    except CommandInputError as exc:
        return fail(str(exc))
    total = config.seeds * len(config.arms_run)
    with tqdm(total=total, desc="study", unit="arm run", disable=None) as progress:
        runs = run_study(config, on_done=lambda _: progress.update(1))
    study = summarize(config, runs)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "study.json").write_text(json.dumps(study, indent=1))
    (out / "study.html").write_text(render_study_html(study))
    print(render(study))
    print(f"\nwrote {out / 'study.json'} and {out / 'study.html'}")
    if args.json:
        print(json.dumps({k: v for k, v in study.items() if k != "runs"}))
    return 0
