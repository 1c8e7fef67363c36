"""The analysts' commands: ``loopbreak ope report``, ``loopbreak ope gate`` and
``loopbreak ab analyze`` (their parsers are in ``cli.main``).

Exit codes: 0 done (for the gate: ready for A/B), 1 the gate says not ready, 2 bad input or
options (the message names the column and the row, or the option).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    from sqlalchemy import Engine

logger = logging.getLogger(__name__)

EXIT_READY = 0
EXIT_NOT_READY = 1
EXIT_BAD_INPUT = 2


class CommandInputError(ValueError):
    """An option or input the command cannot use; the message says which and why."""


def _say(text: str) -> None:
    """One line of the command's output (the terminal table, or the last JSON line)."""
    sys.stdout.write(f"{text}\n")


def _fail(message: str) -> int:
    sys.stderr.write(f"error: {message}\n")
    return EXIT_BAD_INPUT


def read_contract_file(path: Path) -> pd.DataFrame:
    """A whole Parquet or CSV file of OPE rows."""
    import pandas as pd

    if not path.exists():
        raise CommandInputError(f"--input {path} does not exist")
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    if path.suffix == ".csv":
        return pd.read_csv(path)
    raise CommandInputError(f"input must be a .parquet or .csv file; got {path.name}")


def _when(text: str | None, option: str) -> datetime | None:
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise CommandInputError(f"{option} must be an ISO date or time; got {text!r}") from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _engine(url: str | None) -> Engine:
    from api.settings import Settings
    from proplog.engine import init_db, make_engine

    settings = Settings(**({"database_url": url} if url else {}))
    engine = make_engine(settings.database_url)
    init_db(engine)
    return engine


def resolve_model(name: str, engine: Engine) -> Path:
    """A model file path, or a stored model version's ``path``."""
    from sqlmodel import Session, select

    from proplog.schema import ModelVersion

    path = Path(name)
    if path.exists():
        return path
    with Session(engine) as session:
        stored = session.exec(select(ModelVersion).where(ModelVersion.version == name)).first()
    if stored is None or not stored.path:
        raise CommandInputError(
            f"{name} is neither a model file nor a model version with a path in the log"
        )
    if not Path(stored.path).exists():
        raise CommandInputError(f"model version {name}'s path {stored.path} does not exist")
    return Path(stored.path)


def _target(name: str, engine: Engine, args: argparse.Namespace) -> Any:
    from explore import EpsilonGreedySlate
    from fm_core import load_scorer_file
    from loop.ope_targets import TargetPolicy

    scorer = load_scorer_file(resolve_model(name, engine))
    policy = EpsilonGreedySlate(epsilon=args.epsilon, pool=args.pool)
    return TargetPolicy(name=scorer.model_version, scorer=scorer, policy=policy)


def _replayed(engine: Engine, names: list[str], args: argparse.Namespace) -> list[Any]:
    from loop.ope_targets import replay_targets
    from loop.windows import read_window

    targets = [_target(name, engine, args) for name in names]
    window = read_window(
        engine, since=_when(args.since, "--since"), until=_when(args.until, "--until")
    )
    model = None if args.reward_model == "none" else args.reward_model
    return replay_targets(window, targets, reward_model=model, seed=args.seed)


def _write_json(path: Path, document: dict[str, Any]) -> None:
    path.write_text(json.dumps(document, indent=2, allow_nan=False))


def cmd_ope_report(args: argparse.Namespace) -> int:
    """``loopbreak ope report``: report.html, report.json and a terminal table."""
    from ope.batch import OpeInputError
    from ope.report import build_report, check_segments, report_table
    from ope.report_html import render_html

    try:
        if (args.input is None) == (args.candidate is None):
            raise CommandInputError("give either --input FILE or --candidate MODEL (log replay)")
        if args.input is not None:
            path = Path(args.input)
            frame = read_contract_file(path)
            segments = args.segment or [c for c in ("surface", "device") if c in frame.columns]
            check_segments(frame, segments)
            source, target = str(path), {}
        else:
            engine = _engine(args.database)
            replayed = _replayed(engine, [args.candidate], args)[0]
            frame, segments = replayed.frame, args.segment or ["surface", "device"]
            check_segments(frame, segments)
            source = "the propensity log"
            target = {
                "candidate": replayed.name,
                "epsilon": args.epsilon,
                "pool": args.pool,
                "reward_model": args.reward_model,
                "unsupported_mass": replayed.unsupported_mass,
            }
            engine.dispose()
        report = build_report(frame, segments=segments, alpha=args.alpha, source=source)
        report["target"] = target
    except OpeInputError as exc:
        where = f"{args.input}: " if args.input else ""
        return _fail(f"{where}{exc}")
    except (CommandInputError, ValueError, FileNotFoundError) as exc:
        return _fail(str(exc))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    _write_json(out / "report.json", report)
    (out / "report.html").write_text(render_html(report), encoding="utf-8")
    _say(report_table(report))
    _say(f"wrote {out / 'report.html'} and {out / 'report.json'}")
    if args.json:
        _say(json.dumps(report, allow_nan=False))
    return 0


def _gate_batches(args: argparse.Namespace, engine: Engine) -> tuple[Any, Any, Any, Any]:
    """(candidate batch, baseline batch, names, unsupported masses or None)."""
    from ope.batch import OpeBatch

    if args.input is not None:
        if args.baseline_input is None:
            raise CommandInputError("--input needs --baseline-input: the baseline's rows")
        candidate = OpeBatch.from_frame(read_contract_file(Path(args.input)))
        baseline = OpeBatch.from_frame(read_contract_file(Path(args.baseline_input)))
        return candidate, baseline, (args.candidate, args.baseline), None
    replayed = _replayed(engine, [args.candidate, args.baseline], args)
    batches = [OpeBatch.from_frame(r.frame) for r in replayed]
    masses = {
        who: r.unsupported_mass for who, r in zip(("candidate", "baseline"), replayed, strict=True)
    }
    known = {who: m for who, m in masses.items() if m is not None}
    return batches[0], batches[1], (replayed[0].name, replayed[1].name), known or None


def cmd_ope_gate(args: argparse.Namespace) -> int:
    """``loopbreak ope gate``: ready for A/B or not, with every check; stored in ope_report."""
    from sqlmodel import Session

    from ope.batch import OpeInputError
    from ope.gate import GateThresholds, gate
    from proplog.registry import record_ope_report

    try:
        thresholds = GateThresholds(
            margin=args.margin, min_ess=args.min_ess, weight_tolerance=args.weight_tolerance,
            max_weight_share=args.max_weight_share, max_unsupported=args.max_unsupported,
        )  # fmt: skip
        engine = _engine(args.database)
        candidate, baseline, names, unsupported = _gate_batches(args, engine)
        decision = gate(
            candidate, baseline, thresholds=thresholds, estimator=args.estimator,
            alpha=args.alpha, unsupported=unsupported,
        )  # fmt: skip
    except OpeInputError as exc:
        return _fail(str(exc))
    except (CommandInputError, ValueError, FileNotFoundError) as exc:
        return _fail(str(exc))
    payload = decision.payload() | {"candidate": names[0], "baseline": names[1]}
    with Session(engine) as session:
        report_id = record_ope_report(
            session=session, candidate=names[0], baseline=names[1], payload=payload,
            decision=decision.decision, reasons=decision.reasons,
        )  # fmt: skip
    engine.dispose()
    level = round(100 * (1 - args.alpha))
    lift = decision.lift
    _say(f"candidate {names[0]} vs baseline {names[1]} on {lift.n_decisions} logged decisions")
    _say(f"{'estimator':<12}{'candidate':>11}{'baseline':>11}{'lift':>10}"
          f"{f'{level}% lo':>10}{f'{level}% hi':>10}")  # fmt: skip
    for name, one in decision.lifts.items():
        _say(
            f"{name:<12}{one.candidate:>11.4f}{one.baseline:>11.4f}{one.value:>10.4f}"
            f"{one.lo:>10.4f}{one.hi:>10.4f}"
        )
    for reason in decision.reasons:
        _say(f"  {reason}")
    verdict = "READY for A/B" if decision.ready else "NOT READY for A/B"
    _say(f"{verdict} (decision stored as ope_report {report_id})")
    if args.json:
        _say(json.dumps(payload | {"report_id": report_id}, allow_nan=False))
    return EXIT_READY if decision.ready else EXIT_NOT_READY


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


def cmd_ab_analyze(args: argparse.Namespace) -> int:
    """``loopbreak ab analyze``: per-arm means and each treatment's difference from control,
    beside the OPE prediction made beforehand; stored as ope_report rows (decision "ab")."""
    import pandas as pd
    from sqlmodel import Session

    from ope.ab import agreement, analyze
    from ope.report import finite_or_none
    from proplog.registry import record_ope_report

    try:
        engine = _engine(args.database)
        rows = experiment_rows(engine, args.experiment, args.reward)
        result = analyze(rows, control=args.control, alpha=args.alpha)
    except (CommandInputError, ValueError) as exc:
        return _fail(str(exc))
    started = pd.Timestamp(rows["created_at"].min()).to_pydatetime()
    versions = rows.groupby("arm")["model_version"].agg(lambda v: v.value_counts().index[0])
    level = round(100 * (1 - args.alpha))
    _say(f"experiment {args.experiment}: reward = {args.reward} per decision; control "
          f"{args.control}; {level}% intervals")  # fmt: skip
    _say(f"{'arm':<14}{'model':<24}{'decisions':>10}{'users':>8}{'mean':>10}")
    for name, arm in result.arms.items():
        _say(f"{name:<14}{versions[name]:<24}{arm.decisions:>10}{arm.users:>8}{arm.mean:>10.4f}")
    document: dict[str, Any] = {"experiment": args.experiment, "reward": args.reward}
    document |= result.as_dict()
    document["predictions"] = {}
    for arm, by_kind in result.differences.items():
        online = by_kind["clustered"]
        welch = by_kind["welch"]
        _say(
            f"{arm} - {args.control}: {online.value:+.4f} [{online.lo:+.4f}, {online.hi:+.4f}] "
            f"clustered by user; [{welch.lo:+.4f}, {welch.hi:+.4f}] by decision"
        )
        prediction = prior_prediction(
            engine, candidate=versions[arm], baseline=versions[args.control], before=started
        )
        compared = agreement(online, prediction["lift"]) if prediction else {}
        if prediction:
            lift = prediction["lift"]
            _say(
                f"  OPE predicted {lift.get('value', float('nan')):+.4f} "
                f"[{lift.get('lo', float('nan')):+.4f}, {lift.get('hi', float('nan')):+.4f}] "
                f"({lift.get('estimator')}, ope_report {prediction['report_id']}); "
                f"online - offline {compared.get('online_minus_offline', float('nan')):+.4f}"
            )
        else:
            _say(f"  no OPE prediction stored for {versions[arm]}")
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
        _say(json.dumps(finite_or_none(document), allow_nan=False))
    return 0


def add_parsers(ope_commands: Any, commands: Any) -> None:
    """Register ``ope report`` and ``ope gate`` under ``ope_commands`` and ``ab analyze`` under
    ``commands`` (argparse sub-parser actions of ``cli.main``)."""
    report = ope_commands.add_parser(
        "report", help="an HTML + JSON report of a policy's value from the log or a file"
    )
    report.add_argument("--input", help="Parquet/CSV rows in the input contract (or use the log)")
    report.add_argument("--candidate", help="model file or model version to replay on the log")
    report.add_argument("--out", default="ope_report", help="output directory")
    report.add_argument(
        "--segment", action="append", help="segment column (repeat; default surface, device)"
    )
    _add_common(report)
    report.set_defaults(func=cmd_ope_report)

    gate = ope_commands.add_parser(
        "gate", help="is the candidate ready for an A/B test against the baseline?"
    )
    gate.add_argument("--candidate", required=True, help="model file or model version (or name)")
    gate.add_argument("--baseline", required=True, help="model file or model version (or name)")
    gate.add_argument(
        "--input", help="the candidate's rows (Parquet/CSV) instead of a replay of the log"
    )
    gate.add_argument("--baseline-input", help="the baseline's rows, on the same logged rows")
    gate.add_argument("--margin", type=float, default=0.0, help="lift lower bound must exceed")
    gate.add_argument("--estimator", help="the lift to decide on (default dr, else snipw)")
    gate.add_argument("--min-ess", type=float, default=100.0, help="effective sample size floor")
    gate.add_argument(
        "--weight-tolerance", type=float, default=0.1, help="largest |mean weight - 1|"
    )
    gate.add_argument(
        "--max-weight-share", type=float, default=0.05, help="largest weight / sum of weights"
    )
    gate.add_argument(
        "--max-unsupported",
        type=float,
        default=0.01,
        help="largest target mass outside the logging policy's support",
    )
    _add_common(gate)
    gate.set_defaults(func=cmd_ope_gate)

    ab = commands.add_parser("ab", help="A/B test analysis")
    ab_commands = ab.add_subparsers(dest="ab_command", required=True, metavar="AB_COMMAND")
    analyze = ab_commands.add_parser(
        "analyze", help="difference in means per arm, beside the OPE prediction"
    )
    analyze.add_argument("--experiment", required=True, help="experiment name")
    analyze.add_argument("--database", help="database URL (default: the service's)")
    analyze.add_argument("--control", default="control", help="control arm (default control)")
    analyze.add_argument(
        "--reward", choices=("plays", "play_value"), default="plays", help="reward per decision"
    )
    analyze.add_argument("--alpha", type=float, default=0.05, help="1 - interval level")
    analyze.add_argument("--json", action="store_true", help="end with one JSON line")
    analyze.set_defaults(func=cmd_ab_analyze)


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--database", help="database URL (default: the service's)")
    parser.add_argument("--epsilon", type=float, default=0.1, help="target exploration rate")
    parser.add_argument("--pool", type=int, default=30, help="target exploration pool")
    parser.add_argument("--since", help="first decision time (ISO) of the log window")
    parser.add_argument("--until", help="end time (ISO, excluded) of the log window")
    parser.add_argument(
        "--reward-model",
        choices=("logistic", "gbdt", "ranker", "none"),
        default="logistic",
        help="cross-fitted reward model for DM/DR on a log replay (ranker: fm_core's DCN-v2)",
    )
    parser.add_argument("--alpha", type=float, default=0.05, help="1 - interval level")
    parser.add_argument("--seed", type=int, default=0, help="reward model folds seed")
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
