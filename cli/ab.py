"""``loopbreak ab``: A/B tests that close the loop with OPE.

- ``ab plan``: before the test, the MDE (or the users an MDE needs) from a pre-period window of
  the log, stored with the configured shares and the confidence sequence's mixture variance.
- ``ab analyze``: per-arm means and each treatment's difference from control (clustered by
  user), the sample-ratio check, CUPED, and the always-valid interval beside the fixed-horizon
  one, beside the gate's earlier prediction; stored in ``ab_analysis`` and ``ope_report``. Safe
  to run every day.
- ``ab agreement``: the gate's predictions against the A/B results across experiments (table,
  summary, and an HTML report with a plot).
- ``ab simulate``: the whole workflow on the simulated world, against its truth.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from cli.common import add_alpha, add_database, add_json, fail, log_engine, parse_when


def add_parser(sub: Any) -> None:
    ab = sub.add_parser("ab", help="A/B tests: plan, analyze, agreement with OPE, simulate")
    commands = ab.add_subparsers(dest="ab_command", required=True, metavar="AB_COMMAND")
    _add_plan(commands)
    _add_analyze(commands)
    _add_agreement(commands)
    from cli.ab_simulate import add_simulate

    add_simulate(commands)


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--experiment", required=True, help="experiment name")
    add_database(parser)
    parser.add_argument("--control", default="control", help="control arm (default control)")
    parser.add_argument(
        "--reward", choices=("plays", "play_value"), default="plays", help="reward per decision"
    )
    add_alpha(parser)
    add_json(parser)


def _add_plan(commands: Any) -> None:
    plan = commands.add_parser("plan", help="MDE and sample size before the test starts")
    _add_common(plan)
    plan.add_argument(
        "--shares", help="configured shares, e.g. control=0.5,new=0.5 (or give --config)"
    )
    plan.add_argument(
        "--config", help="the experiment's settings as the service reads them (JSON or a file)"
    )
    plan.add_argument("--power", type=float, default=0.8, help="power (default 0.8)")
    plan.add_argument("--srm-alpha", type=float, default=0.001, help="SRM flag level")
    plan.add_argument("--days", type=float, default=14.0, help="planned length in days")
    plan.add_argument("--until", help="end of the pre-period (default: the last decision)")
    size = plan.add_mutually_exclusive_group()
    size.add_argument("--mde", type=float, help="absolute MDE: the users it needs")
    size.add_argument("--users", type=int, help="planned users: their MDE")
    plan.set_defaults(func=run_plan)


def _add_analyze(commands: Any) -> None:
    analyze = commands.add_parser(
        "analyze", help="difference per arm with SRM, CUPED, always-valid interval, prediction"
    )
    _add_common(analyze)
    analyze.add_argument("--until", help="analyse the decisions before this time (a past look)")
    analyze.add_argument("--no-cuped", action="store_true", help="skip the CUPED adjustment")
    analyze.set_defaults(func=run_analyze)


def _add_agreement(commands: Any) -> None:
    agreement = commands.add_parser(
        "agreement", help="the gate's predictions against the A/B results, across experiments"
    )
    add_database(agreement)
    add_alpha(agreement)
    agreement.add_argument("--out", default="out/ab_agreement", help="report folder")
    add_json(agreement)
    agreement.set_defaults(func=run_agreement)


def parse_shares(text: str | None, config: str | None) -> dict[str, float]:
    """The configured shares from ``--shares a=0.5,b=0.5`` or from ``--config``."""
    from loop.experiment import ExperimentSettings

    if (text is None) == (config is None):
        raise ValueError("give exactly one of --shares and --config")
    if config is not None:
        path = Path(config)
        raw = path.read_text() if path.exists() else config
        try:
            return ExperimentSettings.model_validate_json(raw).shares
        except Exception as exc:  # pydantic's ValidationError names the field
            raise ValueError(f"--config is not an experiment's settings: {exc}") from None
    shares = {}
    for part in str(text).split(","):
        name, sep, value = part.partition("=")
        try:
            shares[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise ValueError(f"--shares must look like control=0.5,new=0.5; got {text!r}")
    return shares


def run_plan(args: argparse.Namespace) -> int:
    from loop.ab_planning import PlanRequest, make_plan

    try:
        request = PlanRequest(
            experiment=args.experiment, shares=parse_shares(args.shares, args.config),
            control=args.control, reward=args.reward, alpha=args.alpha, power=args.power,
            srm_alpha=args.srm_alpha, days=args.days, until=parse_when(args.until, "--until"),
            users=args.users, mde=args.mde,
        )  # fmt: skip
        engine = log_engine(args.database)
        stored = make_plan(engine, request)
        engine.dispose()
    except (ValueError, FileNotFoundError) as exc:
        return fail(str(exc))
    noise, made = stored.noise, stored.plan
    print(
        f"experiment {args.experiment}: pre-period {stored.since:%Y-%m-%d %H:%M} to "
        f"{stored.until:%Y-%m-%d %H:%M}: {noise.decisions} decisions, {noise.users} users, "
        f"mean {noise.mean:.4f} {args.reward} per decision, per-user sd {noise.sigma:.4f}"
    )
    relative = f" ({made.mde / noise.mean:+.1%} of the mean)" if noise.mean else ""
    print(
        f"{stored.treatment} ({made.treatment_share:g}) against {args.control} "
        f"({made.control_share:g}), alpha {made.alpha:g}, power {made.power:g}: "
        f"{made.users} users detect {made.mde:.4f}{relative}"
    )
    print(f"confidence sequence mixture variance tau2 {made.tau2:.3g}; plan {stored.plan_id}")
    if args.json:
        print(json.dumps(stored.document(), allow_nan=False))
    return 0


def _interval(value: float, lo: float, hi: float) -> str:
    return f"{value:+.4f} [{lo:+.4f}, {hi:+.4f}]"


def run_analyze(args: argparse.Namespace) -> int:
    from loop.ab_analysis import AnalysisSettings, run_analysis

    try:
        settings = AnalysisSettings(
            experiment=args.experiment, control=args.control, reward=args.reward,
            alpha=args.alpha, until=parse_when(args.until, "--until"),
            use_cuped=not args.no_cuped,
        )  # fmt: skip
        engine = log_engine(args.database)
        analysis = run_analysis(engine, settings)
        engine.dispose()
    except ValueError as exc:  # CommandInputError included
        return fail(str(exc))
    level = round(100 * (1 - args.alpha))
    print(
        f"experiment {args.experiment}: reward = {args.reward} per decision; control "
        f"{args.control}; {level}% intervals"
    )
    print(f"{'arm':<14}{'model':<24}{'decisions':>10}{'users':>8}{'mean':>10}")
    for name, arm in analysis.result.arms.items():
        model = analysis.versions[name]
        print(f"{name:<14}{model:<24}{arm.decisions:>10}{arm.users:>8}{arm.mean:>10.4f}")
    print(analysis.srm.sentence())
    for note in analysis.notes:
        print(f"  note: {note}")
    for arm, one in analysis.arms.items():
        fixed, seq = one.fixed, one.sequential
        print(f"{arm} - {args.control}:")
        print(f"  fixed horizon, clustered by user  {_interval(fixed.value, fixed.lo, fixed.hi)}")
        welch = _interval(fixed.value, one.welch.lo, one.welch.hi)
        print(f"  by decision (Welch)               {welch}")
        label = f"always valid (look {seq.looks})"
        print(f"  {label:<34}{_interval(seq.value, seq.running_lo, seq.running_hi)}")
        if one.cuped is not None:
            narrower = 1 - (one.cuped.hi - one.cuped.lo) / (fixed.hi - fixed.lo)
            print(
                f"  CUPED (pre-period plays)          "
                f"{_interval(one.cuped.value, one.cuped.lo, one.cuped.hi)} "
                f"({narrower:+.1%} narrower)"
            )
        if one.prediction:
            lift = one.prediction["lift"]
            value, lo, hi = (lift.get(k) for k in ("value", "lo", "hi"))
            shown = _interval(value, lo, hi) if None not in (value, lo, hi) else str(value)
            print(
                f"  OPE predicted                     {shown} ({lift.get('estimator')}, "
                f"ope_report {one.prediction['report_id']}); online - offline "
                f"{one.agreement.get('online_minus_offline', float('nan')):+.4f}"
            )
        else:
            print(f"  no OPE prediction stored for {one.candidate}")
    if args.json:
        print(json.dumps(analysis.document(), allow_nan=False))
    return 0


def run_agreement(args: argparse.Namespace) -> int:
    from ope.ab_agreement import agreement_summary
    from ope.ab_agreement_report import HEADER, render_agreement_html, summary_lines, table_rows
    from ope.report import finite_or_none
    from proplog.ab_records import latest_ab_analyses

    try:
        engine = log_engine(args.database)
        frame = latest_ab_analyses(engine)
        engine.dispose()
        summary = agreement_summary(frame, alpha=args.alpha)
    except ValueError as exc:
        return fail(str(exc))
    rows = table_rows(frame)
    widths = [max(len(str(r[i])) for r in [HEADER, *rows]) for i in range(len(HEADER))]
    for row in [HEADER, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))
    for line in summary_lines(summary):
        print(line)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "agreement.html").write_text(render_agreement_html(frame, summary), encoding="utf-8")
    records = frame.drop(columns=["created_at", "until"]).to_json(orient="records")
    document = finite_or_none({"summary": summary.as_dict(), "rows": json.loads(records)})
    (out / "agreement.json").write_text(json.dumps(document, indent=2, allow_nan=False))
    print(f"wrote {out / 'agreement.html'} and {out / 'agreement.json'}")
    if args.json:
        print(json.dumps(document, allow_nan=False))
    return 0
