"""``loopbreak ab analyze``: an A/B experiment read from the log (per-arm means, each treatment's
difference from control, clustered by user), beside the OPE prediction the gate stored before it;
each comparison is stored as an ``ope_report`` row (decision "ab").
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

from cli.common import CommandInputError, add_alpha, add_database, add_json, fail, log_engine

if TYPE_CHECKING:
    import pandas as pd
    from sqlalchemy import Engine


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


def experiment_rows(engine: Engine, experiment: str, reward: str) -> pd.DataFrame:
    """One row per decision of ``experiment``: arm, user_id, model_version, created_at and
    reward (``plays``: rec plays on the slate; ``play_value``: the plays' summed value)."""
    import pandas as pd

    from loop.experiment import ARM_SEPARATOR
    from proplog.frames import decision_frame, slate_frame

    decisions = decision_frame(session_or_engine=engine)
    prefix = f"{experiment}{ARM_SEPARATOR}"
    decisions = decisions[decisions["arm"].fillna("").str.startswith(prefix)]
    if decisions.empty:
        raise CommandInputError(f"no decision in the log has an arm of experiment {experiment!r}")
    slates = slate_frame(session_or_engine=engine)
    slates = slates[slates["decision_id"].isin(decisions["decision_id"])]
    column = "played" if reward == "plays" else "play_value"
    per_decision = slates.groupby("decision_id")[column].sum()
    return pd.DataFrame(
        {
            "decision_id": decisions["decision_id"].to_numpy(),
            "arm": decisions["arm"].str.slice(len(prefix)).to_numpy(),
            "user_id": decisions["user_id"].to_numpy(),
            "model_version": decisions["model_version"].to_numpy(),
            "created_at": decisions["created_at"].to_numpy(),
            "reward": per_decision.reindex(decisions["decision_id"]).fillna(0.0).to_numpy(),
        }
    )


def prior_prediction(
    engine: Engine, *, candidate: str, baseline: str, before: datetime
) -> dict[str, Any] | None:
    """The latest gate report for ``candidate`` (against ``baseline`` when there is one),
    preferring those stored before ``before``; None when the candidate was never gated."""
    from sqlmodel import Session, col, select

    from ope.gate import NOT_READY, READY
    from proplog.schema import OpeReport

    with Session(engine) as session:
        rows = session.exec(
            select(OpeReport)
            .where(OpeReport.candidate == candidate)
            .where(col(OpeReport.decision).in_([READY, NOT_READY]))
            .order_by(col(OpeReport.created_at).desc(), col(OpeReport.id).desc())
        ).all()
    if not rows:
        return None
    ranked = sorted(
        rows,
        key=lambda r: (r.created_at <= before, r.baseline == baseline, r.created_at, r.id or 0),
        reverse=True,
    )
    chosen = ranked[0]
    return {
        "report_id": chosen.id,
        "created_at": chosen.created_at.isoformat(),
        "made_before_experiment": chosen.created_at <= before,
        "baseline": chosen.baseline,
        "decision": chosen.decision,
        "lift": chosen.payload.get("lift", {}),
    }


def run(args: argparse.Namespace) -> int:
    """``loopbreak ab analyze``: per-arm means and each treatment's difference from control,
    beside the OPE prediction made beforehand; stored as ope_report rows (decision "ab")."""
    import pandas as pd
    from sqlmodel import Session

    from ope.ab import agreement, analyze
    from ope.report import finite_or_none
    from proplog.registry import record_ope_report

    try:
        engine = log_engine(args.database)
        rows = experiment_rows(engine, args.experiment, args.reward)
        result = analyze(rows, control=args.control, alpha=args.alpha)
    except (CommandInputError, ValueError) as exc:
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
