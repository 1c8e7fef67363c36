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
    parse_when,
)
from cli.engine import add_engine, check_engine_options, engine_session

if TYPE_CHECKING:
    import pandas as pd
    from sqlalchemy import Engine

logger = logging.getLogger(__name__)

_EXPECTED_ROWS = (
    "a (position, item) is supported only where the window expects this many logged rows like it"
)

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


def _policy(args: argparse.Namespace) -> Any:
    """The target's exploration policy: any family of ``explore`` with its parameters, calibrated
    per request within ``--budget`` when one is given."""
    from explore import make_policy

    try:
        return make_policy(
            args.policy, epsilon=args.epsilon, pool=args.pool, temperature=args.temperature,
            uniform_mix=args.uniform_mix, budget=args.budget, floor=args.floor,
        )  # fmt: skip
    except (TypeError, ValueError) as exc:
        raise CommandInputError(f"--policy {args.policy}: {exc}") from None


def _target(name: str, engine: Engine, policy: Any) -> Any:
    from fm_core import load_scorer_file
    from loop.ope_targets import TargetPolicy

    scorer = load_scorer_file(resolve_model(name, engine))
    return TargetPolicy(name=scorer.model_version, scorer=scorer, policy=policy)


def _training_window(engine: Engine, version: str) -> dict[str, Any] | None:
    """The training window a model version was registered with (``loop.retrain``), if any."""
    from sqlmodel import Session

    from proplog.schema import ModelVersion

    with Session(engine) as session:
        stored = session.get(ModelVersion, version)
    return None if stored is None else stored.params.get("training_window")


def _evaluation(engine: Engine, args: argparse.Namespace, limits: Any) -> dict[str, Any] | Any:
    """The candidate against the baseline (default: production as logged) on the log window;
    refuses a window that overlaps the candidate's training window unless ``--force``."""
    from loop.ope_eval import EvaluationSettings, evaluate, training_overlap
    from loop.windows import read_window

    since, until = parse_when(args.since, "--since"), parse_when(args.until, "--until")
    policy = _policy(args)
    candidate = _target(args.candidate, engine, policy)
    baseline = None if args.baseline is None else _target(args.baseline, engine, policy)
    window = read_window(engine, since=since, until=until)
    if window.decisions.empty:
        raise CommandInputError("the log window holds no decisions; check --since and --until")
    overlap = training_overlap(window, _training_window(engine, candidate.name))
    if overlap is not None and not args.force:
        raise CommandInputError(
            f"{overlap[1]}; evaluate on later decisions (--since) or pass --force"
        )
    settings = EvaluationSettings(
        reward_model=args.reward_model, seed=args.seed, alpha=args.alpha, limits=limits
    )
    evaluation = evaluate(window, candidate, baseline, settings=settings, since=since, until=until)
    record = evaluation.record()
    record["training_overlap"] = None if overlap is None else overlap[1]
    record["policy"] = {"family": args.policy, **policy.params()}
    return evaluation, record


def _write_json(path: Path, document: dict[str, Any]) -> None:
    path.write_text(json.dumps(document, indent=2, allow_nan=False))


def run_report(args: argparse.Namespace) -> int:
    """``loopbreak ope report``: report.html, report.json and a terminal table, leading with
    the decision (candidate against production, reliable or not and why)."""
    from ope.batch import OpeBatch, OpeInputError
    from ope.report import build_report, check_segments, report_table
    from ope.report_html import render_html
    from ope.spark_session import MasterError, SparkUnavailableError
    from ope.verdict import VerdictLimits, primary_estimate

    try:
        check_engine_options(args)
        if (args.input is None) == (args.candidate is None):
            raise CommandInputError("give either --input FILE or --candidate MODEL (log replay)")
        if args.engine == "spark":
            report = _spark_report(args)
            return _write_report(args, report, render_html, report_table)
        limits = VerdictLimits(
            min_ess=args.min_ess, max_unsupported=args.max_unsupported,
            min_expected_rows=args.min_expected_rows,
        )  # fmt: skip
        decision = primary = None
        if args.input is not None:
            path = Path(args.input)
            frame = read_contract_file(path)
            segments = args.segment or [c for c in ("surface", "device") if c in frame.columns]
            check_segments(frame, segments)
            source, target = str(path), {}
            batch = OpeBatch.from_frame(frame)
            if batch.q_hat is not None and batch.v_hat is not None:
                primary = primary_estimate(batch, alpha=args.alpha, limits=limits).as_dict()
        else:
            engine = log_engine(args.database)
            evaluation, decision = _evaluation(engine, args, limits)
            engine.dispose()
            frame = evaluation.candidate.replayed.frame
            segments = args.segment or ["surface", "device"]
            check_segments(frame, segments)
            source = "the propensity log"
            target = {
                "candidate": evaluation.candidate.name,
                "baseline": evaluation.baseline.name,
                "policy": args.policy,
                "reward_model": args.reward_model,
                "unsupported_share": evaluation.candidate.support.share,
            }
        report = build_report(
            frame.drop(columns=["v_hat_unsupported"], errors="ignore"),
            segments=segments, alpha=args.alpha, source=source,
        )  # fmt: skip
        report["target"] = target
        report["decision"] = decision
        report["primary"] = primary if decision is None else decision["candidate"]["primary"]
    except OpeInputError as exc:
        where = f"{args.input}: " if args.input and Path(args.input).is_file() else ""
        return fail(f"{where}{exc}")
    except (CommandInputError, ValueError, FileNotFoundError) as exc:
        return fail(str(exc))
    except (MasterError, SparkUnavailableError) as exc:
        return fail(str(exc))
    return _write_report(args, report, render_html, report_table)


def _spark_report(args: argparse.Namespace) -> dict[str, Any]:
    """The report of a Parquet dataset (``--input``: a folder, file or glob of partitions) on
    Spark (``ope.spark_report``): the in-process report's numbers. The primary estimate's
    ladder (``ope.verdict.primary_estimate``) runs in-process only, so it is left out."""
    from ope.spark_dataset import open_dataset
    from ope.spark_report import spark_report

    if args.candidate is not None:
        raise CommandInputError("--engine spark reports on --input rows, not a log replay")
    dataset = open_dataset(args.input)
    segments = args.segment or [c for c in ("surface", "device") if c in dataset.columns]
    missing = [c for c in segments if c not in dataset.columns]
    if missing:
        raise CommandInputError(f"segment column(s) {', '.join(missing)} not in the input")
    report = spark_report(
        engine_session(args), dataset, segments=segments, alpha=args.alpha, source=args.input
    )
    report["decision"] = None
    report["primary"] = None
    return report


def _write_report(
    args: argparse.Namespace, report: dict[str, Any], render_html: Any, report_table: Any
) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    _write_json(out / "report.json", report)
    (out / "report.html").write_text(render_html(report), encoding="utf-8")
    print(report_table(report))
    print(f"wrote {out / 'report.html'} and {out / 'report.json'}")
    if args.json:
        print(json.dumps(report, allow_nan=False))
    return 0


def _file_batches(args: argparse.Namespace) -> tuple[Any, Any]:
    from ope.batch import OpeBatch

    if args.baseline_input is None:
        raise CommandInputError("--input needs --baseline-input: the baseline's rows")
    candidate = OpeBatch.from_frame(read_contract_file(Path(args.input)))
    baseline = OpeBatch.from_frame(read_contract_file(Path(args.baseline_input)))
    return candidate, baseline


def run_gate(args: argparse.Namespace) -> int:
    """``loopbreak ope gate``: ready for A/B or not, with every check; stored in ope_report.
    On a log replay it prints and stores the same decision the report leads with."""
    from sqlmodel import Session

    from loop.ope_eval import gate_evaluation
    from ope.batch import OpeInputError
    from ope.gate import GateThresholds, gate
    from ope.report_decision import decision_lines
    from proplog.registry import record_ope_report

    record = None
    try:
        thresholds = GateThresholds(
            margin=args.margin, min_ess=args.min_ess, weight_tolerance=args.weight_tolerance,
            max_weight_share=args.max_weight_share, max_unsupported=args.max_unsupported,
            min_expected_rows=args.min_expected_rows,
        )  # fmt: skip
        engine = log_engine(args.database)
        if args.input is not None:
            if args.baseline is None:
                raise CommandInputError("--input needs --baseline: the baseline's name")
            candidate, baseline = _file_batches(args)
            names = (args.candidate, args.baseline)
            decision = gate(
                candidate, baseline, thresholds=thresholds, estimator=args.estimator,
                alpha=args.alpha,
            )  # fmt: skip
        else:
            evaluation, record = _evaluation(engine, args, thresholds.verdict_limits())
            names = (evaluation.candidate.name, evaluation.baseline.name)
            decision = gate_evaluation(evaluation, thresholds, estimator=args.estimator)
    except OpeInputError as exc:
        return fail(str(exc))
    except (CommandInputError, ValueError, FileNotFoundError) as exc:
        return fail(str(exc))
    payload = decision.payload() | {"candidate": names[0], "baseline": names[1]}
    if record is not None:
        payload["evaluation"] = record
    with Session(engine) as session:
        report_id = record_ope_report(
            session=session, candidate=names[0], baseline=names[1], payload=payload,
            decision=decision.decision, reasons=decision.reasons,
        )  # fmt: skip
    engine.dispose()
    level = round(100 * (1 - args.alpha))
    lift = decision.lift
    print(f"candidate {names[0]} vs baseline {names[1]} on {lift.n_decisions} logged decisions")
    if record is not None:
        print("\n".join(decision_lines(record)))
    print(
        f"{'estimator':<12}{'candidate':>11}{'baseline':>11}{'lift':>10}"
        f"{f'{level}% lo':>10}{f'{level}% hi':>10}"
    )
    for one in [lift, *(x for x in decision.lifts.values() if x.estimator != lift.estimator)]:
        print(
            f"{one.estimator:<12}{one.candidate:>11.4f}{one.baseline:>11.4f}{one.value:>10.4f}"
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
    from ope.gate import GateThresholds as Thresholds  # their defaults are the gate's
    from ope.verdict import VerdictLimits

    report = ope_sub.add_parser(
        "report", help="an HTML + JSON report of a policy's value from the log or a file"
    )
    report.add_argument("--input", help="Parquet/CSV rows in the input contract (or use the log)")
    report.add_argument("--candidate", help="model file or model version to replay on the log")
    report.add_argument(
        "--baseline", help="model file or version to compare with (default: production as logged)"
    )
    report.add_argument("--out", default="ope_report", help="output directory")
    add_engine(report)
    report.add_argument(
        "--segment", action="append", help="segment column (repeat; default surface, device)"
    )
    config_option(report, "--min-ess", VerdictLimits, help="effective sample size for reliable")
    config_option(
        report, "--max-unsupported", VerdictLimits, help="largest unsupported share for reliable"
    )
    config_option(report, "--min-expected-rows", VerdictLimits, help=_EXPECTED_ROWS)
    _add_common(report)
    report.set_defaults(func=run_report)

    gate = ope_sub.add_parser(
        "gate", help="is the candidate ready for an A/B test against the baseline?"
    )
    gate.add_argument("--candidate", required=True, help="model file or model version (or name)")
    gate.add_argument(
        "--baseline", help="model file or version (or name); default: production as logged"
    )
    gate.add_argument(
        "--input", help="the candidate's rows (Parquet/CSV) instead of a replay of the log"
    )
    gate.add_argument("--baseline-input", help="the baseline's rows, on the same logged rows")
    config_option(gate, "--margin", Thresholds, help="lift lower bound must exceed")
    gate.add_argument(
        "--estimator", help="the lift to decide on (default primary: SLOPE's choice, else snipw)"
    )
    config_option(gate, "--min-ess", Thresholds, help="effective sample size floor")
    config_option(gate, "--weight-tolerance", Thresholds, help="largest mean weight gap")
    config_option(gate, "--max-weight-share", Thresholds, help="largest weight / sum of weights")
    config_option(
        gate,
        "--max-unsupported",
        Thresholds,
        help="largest share of the target's slate outside the logging policy's support",
    )
    config_option(gate, "--min-expected-rows", Thresholds, help=_EXPECTED_ROWS)
    _add_common(gate)
    gate.set_defaults(func=run_gate)


def _add_common(parser: argparse.ArgumentParser) -> None:
    """The options of a log replay (the window, the target policy, the outcome model), and the
    interval's."""
    from explore.registry import FAMILIES

    add_database(parser)
    parser.add_argument(
        "--policy", choices=sorted(FAMILIES), default="epsilon_greedy",
        help="the target's exploration family (any policy of explore)",
    )  # fmt: skip
    parser.add_argument("--epsilon", type=float, default=0.1, help="target exploration rate")
    parser.add_argument("--pool", type=int, default=30, help="target exploration pool")
    parser.add_argument("--temperature", type=float, default=0.05, help="Plackett-Luce temperature")
    parser.add_argument(
        "--uniform-mix", type=float, default=0.0, help="Plackett-Luce uniform mix per position"
    )
    parser.add_argument(
        "--budget", type=float, help="calibrate the family per request within this budget"
    )
    parser.add_argument("--floor", type=float, default=0.0, help="propensity floor with --budget")
    parser.add_argument("--since", help="first decision time (ISO) of the log window")
    parser.add_argument("--until", help="end time (ISO, excluded) of the log window")
    parser.add_argument(
        "--force", action="store_true",
        help="evaluate even on decisions inside the candidate's training window",
    )  # fmt: skip
    parser.add_argument(
        "--reward-model",
        choices=("logistic", "gbdt", "ranker"),
        default="logistic",
        help="the window's cross-fitted outcome model for DM/DR (ranker: fm_core's DCN-v2)",
    )
    add_alpha(parser)
    parser.add_argument("--seed", type=int, default=0, help="outcome model folds seed")
    add_json(parser)
