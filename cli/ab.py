"""``loopbreak ab analyze``: an A/B experiment read from the log (per-arm means, each treatment's
difference from control, clustered by user), beside the OPE prediction the gate stored before it;
each comparison is stored as an ``ope_report`` row (decision "ab").
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from cli.common import add_alpha, add_database, add_json, fail, log_engine


def add_parser(sub: Any) -> None:
    ab = sub.add_parser("ab", help="A/B test analysis")
    ab_commands = ab.add_subparsers(dest="ab_command", required=True, metavar="AB_COMMAND")
    analyze = ab_commands.add_parser(
        "analyze", help="difference in means per arm, beside the OPE prediction"
    )
    analyze.add_argument("--experiment", required=True, help="experiment name")
    add_database(analyze)
    analyze.add_argument("--control", default="control", help="control arm (default control)")
    analyze.add_argument(
        "--reward", choices=("plays", "play_value"), default="plays", help="reward per decision"
    )
    add_alpha(analyze)
    add_json(analyze)
    analyze.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """``loopbreak ab analyze``: per-arm means and each treatment's difference from control,
    beside the OPE prediction made beforehand; stored as ope_report rows (decision "ab")."""
    import pandas as pd
    from sqlmodel import Session

    from loop.ab_log import experiment_rows, prior_prediction
    from ope.ab import agreement, analyze
    from ope.report import finite_or_none
    from proplog.registry import record_ope_report

    try:
        engine = log_engine(args.database)
        rows = experiment_rows(engine, args.experiment, args.reward)
        result = analyze(rows, control=args.control, alpha=args.alpha)
    except ValueError as exc:  # CommandInputError included
        return fail(str(exc))
    started = pd.Timestamp(rows["created_at"].min()).to_pydatetime()
    versions = rows.groupby("arm")["model_version"].agg(lambda v: v.value_counts().index[0])
    level = round(100 * (1 - args.alpha))
    print(
        f"experiment {args.experiment}: reward = {args.reward} per decision; control "
        f"{args.control}; {level}% intervals"
    )
    print(f"{'arm':<14}{'model':<24}{'decisions':>10}{'users':>8}{'mean':>10}")
    for name, arm in result.arms.items():
        print(f"{name:<14}{versions[name]:<24}{arm.decisions:>10}{arm.users:>8}{arm.mean:>10.4f}")
    document: dict[str, Any] = {"experiment": args.experiment, "reward": args.reward}
    document |= result.as_dict()
    document["predictions"] = {}
    for arm, by_kind in result.differences.items():
        online = by_kind["clustered"]
        welch = by_kind["welch"]
        print(
            f"{arm} - {args.control}: {online.value:+.4f} [{online.lo:+.4f}, {online.hi:+.4f}] "
            f"clustered by user; [{welch.lo:+.4f}, {welch.hi:+.4f}] by decision"
        )
        prediction = prior_prediction(
            engine, candidate=versions[arm], baseline=versions[args.control], before=started
        )
        compared = agreement(online, prediction["lift"]) if prediction else {}
        if prediction:
            lift = prediction["lift"]
            print(
                f"  OPE predicted {lift.get('value', float('nan')):+.4f} "
                f"[{lift.get('lo', float('nan')):+.4f}, {lift.get('hi', float('nan')):+.4f}] "
                f"({lift.get('estimator')}, ope_report {prediction['report_id']}); "
                f"online - offline {compared.get('online_minus_offline', float('nan')):+.4f}"
            )
        else:
            print(f"  no OPE prediction stored for {versions[arm]}")
        payload = {
            "kind": "ab",
            "experiment": args.experiment,
            "arm": arm,
            "control": args.control,
            "reward": args.reward,
            "result": result.as_dict(),
            "prediction": prediction,
            "agreement": compared,
        }
        reasons = [
            f"online {arm} - {args.control} {online.value:.4g} in [{online.lo:.4g}, "
            f"{online.hi:.4g}] ({online.interval}, {level}%)"
        ]
        with Session(engine) as session:
            report_id = record_ope_report(
                session=session, candidate=versions[arm], baseline=versions[args.control],
                payload=finite_or_none(payload), decision="ab", reasons=reasons,
            )  # fmt: skip
        document["predictions"][arm] = {
            "prediction": prediction,
            "agreement": compared,
            "report_id": report_id,
        }
    engine.dispose()
    if args.json:
        print(json.dumps(finite_or_none(document), allow_nan=False))
    return 0
