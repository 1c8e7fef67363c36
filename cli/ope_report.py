"""``loopbreak ope report`` and ``loopbreak ope gate``: a candidate's value, from a file of rows
or replayed on the log, as a report (HTML, JSON, a table) or as the gate's verdict against a
baseline; and the log replay they share (``--candidate``, the target policy, the log window).

Exit codes: 0 done (for the gate: ready for A/B), 1 the gate says not ready, 2 bad input or
options (the message names the column and the row, or the option).
"""

from __future__ import annotations

import argparse
import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cli.common import (
    CommandInputError,
    add_alpha,
    add_database,
    add_json,
    config_option,
    fail,
    log_engine,
)

if TYPE_CHECKING:
    import pandas as pd
    from sqlalchemy import Engine

logger = logging.getLogger(__name__)

EXIT_READY = 0
EXIT_NOT_READY = 1


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


def run_report(args: argparse.Namespace) -> int:
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
            engine = log_engine(args.database)
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
        return fail(f"{where}{exc}")
    except (CommandInputError, ValueError, FileNotFoundError) as exc:
        return fail(str(exc))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    _write_json(out / "report.json", report)
    (out / "report.html").write_text(render_html(report), encoding="utf-8")
    print(report_table(report))
    print(f"wrote {out / 'report.html'} and {out / 'report.json'}")
    if args.json:
        print(json.dumps(report, allow_nan=False))
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


def run_gate(args: argparse.Namespace) -> int:
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
        engine = log_engine(args.database)
        candidate, baseline, names, unsupported = _gate_batches(args, engine)
        decision = gate(
            candidate, baseline, thresholds=thresholds, estimator=args.estimator,
            alpha=args.alpha, unsupported=unsupported,
        )  # fmt: skip
    except OpeInputError as exc:
        return fail(str(exc))
    except (CommandInputError, ValueError, FileNotFoundError) as exc:
        return fail(str(exc))
    payload = decision.payload() | {"candidate": names[0], "baseline": names[1]}
    with Session(engine) as session:
        report_id = record_ope_report(
            session=session, candidate=names[0], baseline=names[1], payload=payload,
            decision=decision.decision, reasons=decision.reasons,
        )  # fmt: skip
    engine.dispose()
    level = round(100 * (1 - args.alpha))
    lift = decision.lift
    print(f"candidate {names[0]} vs baseline {names[1]} on {lift.n_decisions} logged decisions")
    print(
        f"{'estimator':<12}{'candidate':>11}{'baseline':>11}{'lift':>10}"
        f"{f'{level}% lo':>10}{f'{level}% hi':>10}"
    )
    for name, one in decision.lifts.items():
        print(
            f"{name:<12}{one.candidate:>11.4f}{one.baseline:>11.4f}{one.value:>10.4f}"
            f"{one.lo:>10.4f}{one.hi:>10.4f}"
        )
    for reason in decision.reasons:
        print(f"  {reason}")
    verdict = "READY for A/B" if decision.ready else "NOT READY for A/B"
    print(f"{verdict} (decision stored as ope_report {report_id})")
    if args.json:
        print(json.dumps(payload | {"report_id": report_id}, allow_nan=False))
    return EXIT_READY if decision.ready else EXIT_NOT_READY


def add_parser(ope_sub: Any) -> None:
    """``ope report`` and ``ope gate``, under the ``ope`` group's sub-parsers."""
    report = ope_sub.add_parser(
        "report", help="an HTML + JSON report of a policy's value from the log or a file"
    )
    report.add_argument("--input", help="Parquet/CSV rows in the input contract (or use the log)")
    report.add_argument("--candidate", help="model file or model version to replay on the log")
    report.add_argument("--out", default="ope_report", help="output directory")
    report.add_argument(
        "--segment", action="append", help="segment column (repeat; default surface, device)"
    )
    _add_common(report)
    report.set_defaults(func=run_report)

    gate = ope_sub.add_parser(
        "gate", help="is the candidate ready for an A/B test against the baseline?"
    )
    gate.add_argument("--candidate", required=True, help="model file or model version (or name)")
    gate.add_argument("--baseline", required=True, help="model file or model version (or name)")
    gate.add_argument(
        "--input", help="the candidate's rows (Parquet/CSV) instead of a replay of the log"
    )
    gate.add_argument("--baseline-input", help="the baseline's rows, on the same logged rows")
    from ope.gate import GateThresholds as Thresholds  # their defaults are the gate's

    config_option(gate, "--margin", Thresholds, help="lift lower bound must exceed")
    gate.add_argument("--estimator", help="the lift to decide on (default dr, else snipw)")
    config_option(gate, "--min-ess", Thresholds, help="effective sample size floor")
    config_option(gate, "--weight-tolerance", Thresholds, help="largest |mean weight - 1|")
    config_option(gate, "--max-weight-share", Thresholds, help="largest weight / sum of weights")
    config_option(
        gate,
        "--max-unsupported",
        Thresholds,
        help="largest target mass outside the logging policy's support",
    )
    _add_common(gate)
    gate.set_defaults(func=run_gate)


def _add_common(parser: argparse.ArgumentParser) -> None:
    """The options of a log replay, and the interval's."""
    add_database(parser)
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
    add_alpha(parser)
    parser.add_argument("--seed", type=int, default=0, help="reward model folds seed")
    add_json(parser)
