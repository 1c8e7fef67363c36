"""``loopbreak ope``: the off-policy evaluation group. It registers its subcommands and runs two
of them: ``ope estimate`` (every estimator on a file of logged rows, streamed) and ``ope obd``
(the Open Bandit Dataset's relative errors). ``ope coverage`` is in :mod:`cli.ope_coverage`,
``ope report`` and ``ope gate`` in :mod:`cli.ope_report`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from cli import ope_coverage, ope_report
from cli.common import add_alpha, add_json, fail
from cli.engine import add_engine, check_engine_options, engine_session


def add_parser(sub: Any) -> None:
    ope = sub.add_parser("ope", help="off-policy evaluation")
    ope_sub = ope.add_subparsers(dest="ope_command", required=True, metavar="OPE_COMMAND")
    _add_estimate(ope_sub)
    _add_obd(ope_sub)
    ope_coverage.add_parser(ope_sub)
    ope_report.add_parser(ope_sub)


def _add_estimate(ope_sub: Any) -> None:
    from ope.estimators import N_BOOTSTRAP
    from ope.intervals import INTERVALS
    from ope.streaming import CHUNK_ROWS
    from ope.suite import DROS_LAMBDA, SWITCH_TAU

    estimate = ope_sub.add_parser(
        "estimate",
        help="estimate a policy's value from logged rows: a Parquet/CSV file, or a folder or "
        "glob of Parquet partitions",
    )
    estimate.add_argument(
        "--input",
        required=True,
        help="a .parquet or .csv file, or a folder or glob of .parquet partitions (e.g. `loopbreak "
        "export`'s days), with columns reward, pscore, target_pscore [, decision_id, slot, "
        "q_hat, v_hat, pscore_slate, target_pscore_slate, pscore_cascade, "
        "target_pscore_cascade, target_pscore_item]; q_hat is the reward model at the logged "
        "action, v_hat the reward model averaged over the target policy; the slate columns are "
        "whole-slate and prefix probabilities, and the target's probability of the row's item "
        "at any position (the pseudo-inverse estimator pi, for uniform logging)",
    )
    add_alpha(estimate)
    estimate.add_argument(
        "--dros-lambda",
        type=float,
        default=DROS_LAMBDA,
        metavar="L",
        help="DRos shrinkage lambda in [0, inf] (default %(default)s, the value obp's examples "
        "use; obp's default 0 is plain DM)",
    )
    estimate.add_argument(
        "--switch-tau",
        type=float,
        default=SWITCH_TAU,
        metavar="T",
        help="Switch-DR: rows with weight above T use DM only (default %(default)s, obp's)",
    )
    estimate.add_argument(
        "--clip",
        type=float,
        metavar="L",
        help="also report clipped IPS, weights clipped at L (clipped-ipw)",
    )
    estimate.add_argument(
        "--interval",
        choices=INTERVALS,
        default="normal",
        help="normal or t (delta method); bernstein (finite-sample, plain-mean estimators only, "
        "needs --reward-range); bootstrap (Poisson, --bootstrap replicates)",
    )
    estimate.add_argument(
        "--reward-range",
        type=float,
        nargs=2,
        default=(0.0, 1.0),
        metavar=("MIN", "MAX"),
        help="reward bounds for the bernstein interval (default 0 1)",
    )
    estimate.add_argument(
        "--weight-max",
        type=float,
        help="largest possible importance weight, for bernstein (default 1 / smallest pscore)",
    )
    estimate.add_argument("--bootstrap", type=int, default=N_BOOTSTRAP, help="replicates")
    estimate.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    add_engine(estimate)
    estimate.add_argument(
        "--chunk-rows",
        type=int,
        default=CHUNK_ROWS,
        help="rows read at a time; any size gives the same answer (default %(default)s)",
    )
    add_json(estimate)
    estimate.set_defaults(func=run_estimate)


def _partials(
    args: argparse.Namespace, chosen: list[Any], n_bootstrap: int
) -> tuple[dict[str, Any], int]:
    """Merged partials of the input on the chosen engine: a file streamed in chunks, a folder or
    glob of Parquet partitions file by file, or any of them on Spark."""
    from ope import read_batches
    from ope.streaming import stream_partials

    path = Path(args.input)
    if args.engine == "in-process" and path.is_file():
        return stream_partials(
            read_batches(path, chunk_rows=args.chunk_rows), chosen,
            n_bootstrap=n_bootstrap, seed=args.seed,
        )  # fmt: skip
    from ope.spark_dataset import dataset_batches, open_dataset

    dataset = open_dataset(args.input)
    if args.engine == "in-process":
        return stream_partials(
            dataset_batches(dataset, chunk_rows=args.chunk_rows), chosen,
            n_bootstrap=n_bootstrap, seed=args.seed,
        )  # fmt: skip
    from ope.spark_estimate import spark_partials

    return spark_partials(
        engine_session(args), dataset, chosen, n_bootstrap=n_bootstrap, seed=args.seed
    )


def run_estimate(args: argparse.Namespace) -> int:
    """``loopbreak ope estimate``: one row an estimator, with its interval and weights."""
    from ope import Bounds, OpeInputError, estimators
    from ope.spark_session import MasterError, SparkUnavailableError
    from ope.streaming import finish_all

    path = args.input
    try:
        check_engine_options(args)
        chosen = estimators(
            dros_lambda=args.dros_lambda, switch_tau=args.switch_tau, clip=args.clip
        )
        bounds = Bounds(
            reward_min=args.reward_range[0], reward_max=args.reward_range[1],
            weight_max=args.weight_max,
        )  # fmt: skip
        n_bootstrap = args.bootstrap if args.interval == "bootstrap" else 0
        partials, n_rows = _partials(args, chosen, n_bootstrap)
        estimates = finish_all(
            partials, chosen, alpha=args.alpha, interval=args.interval, bounds=bounds
        )
    except FileNotFoundError as exc:
        return fail(str(exc) if "--input" in str(exc) else f"--input {path} does not exist")
    except OpeInputError as exc:
        return fail(f"{path}: {exc}" if Path(path).is_file() else str(exc))  # files named
    except (MasterError, SparkUnavailableError) as exc:
        return fail(str(exc))
    except ValueError as exc:  # a bad option: --alpha, --dros-lambda, --interval, bounds, ...
        return fail(str(exc))
    n_decisions = estimates["ipw"].n_decisions
    level = round(100 * (1 - args.alpha))
    print(
        f"{n_decisions} decisions, {n_rows} rows from {path}; {level}% intervals: {args.interval}"
    )
    d = estimates["ipw"].diagnostics
    print(
        f"weights: ess {d['ess']:.1f} of {n_rows} rows, max {d['max_weight']:.3g}, "
        f"mean {d['mean_weight']:.3f}, target 0 on {100 * d['zero_target_share']:.1f}% of rows"
    )
    if "dr" not in estimates:
        print("no q_hat/v_hat columns: DM needs v_hat; DR, SNDR, DRos, Switch-DR need both")
    print(
        f"{'estimator':<12}{'value':>10}{f'{level}% lo':>10}{f'{level}% hi':>10}"
        f"{'ess':>10}{'max w':>10}  notes"
    )
    notes = {"dros": f"lambda {args.dros_lambda:g}", "switch-dr": f"tau {args.switch_tau:g}"}
    if args.clip is not None:
        notes["clipped-ipw"] = f"clip {args.clip:g}"
    for name, e in estimates.items():
        g = e.diagnostics
        note = notes.get(name, "")
        if e.interval != args.interval:
            note = f"{note}, {e.interval} interval".lstrip(", ")
        for share in ("clipped_share", "switched_share"):
            if share in g:
                note += f", {share.split('_')[0]} {100 * g[share]:.1f}% of rows"
        print(
            f"{name:<12}{e.value:>10.4f}{e.lo:>10.4f}{e.hi:>10.4f}"
            f"{g['ess']:>10.1f}{g['max_weight']:>10.3g}  {note}".rstrip()
        )
    if args.json:
        document = {
            name: {"value": e.value, "lo": e.lo, "hi": e.hi, "ess": e.diagnostics["ess"]}
            for name, e in estimates.items()
        }
        print(json.dumps({"estimates": document}))
    return 0


def _add_obd(ope_sub: Any) -> None:
    obd = ope_sub.add_parser(
        "obd", help="estimate BTS from the Open Bandit Dataset's random logs; relative errors"
    )
    obd.add_argument("--campaign", choices=("all", "men", "women"), help="default: all three")
    obd.add_argument("--runs", type=int, default=10, help="bootstrap runs (default 10)")
    obd.add_argument("--model", choices=("logistic", "gbdt"), default="logistic")
    obd.add_argument("--seed", type=int, default=12345)
    add_json(obd)
    obd.set_defaults(func=run_obd)


def run_obd(args: argparse.Namespace) -> int:
    """``loopbreak ope obd``: each estimator's relative error per campaign, beside obp's."""
    from ope.obd import CAMPAIGNS, PUBLISHED_ALL, evaluate_campaign

    campaigns = [args.campaign] if args.campaign else list(CAMPAIGNS)
    results = {
        c: evaluate_campaign(c, n_runs=args.runs, model=args.model, seed=args.seed)
        for c in campaigns
    }
    names = list(PUBLISHED_ALL)
    print(
        f"Open Bandit Dataset (obp's bundled sample): BTS estimated from the random logs, "
        f"{args.runs} bootstrap runs, {args.model} reward model cross-fitted on 3 folds"
    )
    print("relative error |estimate - BTS on-policy| / BTS on-policy, mean over runs")
    print(f"{'campaign':<18}{'truth':>8}" + "".join(f"{n:>10}" for n in names))
    for c, r in results.items():
        s = r.summary()
        print(f"{c:<18}{r.truth:>8.4f}" + "".join(f"{s[n]['mean']:>10.3f}" for n in names))
    print(f"{'published (all)':<18}{'':>8}" + "".join(f"{PUBLISHED_ALL[n]:>10.3f}" for n in names))
    if args.json:
        out = {
            "campaigns": {
                c: {
                    "truth": r.truth,
                    "clicks_in_random_log": r.clicks,
                    "relative_error": {n: v["mean"] for n, v in r.summary().items()},
                    "relative_error_sd": {n: v["sd"] for n, v in r.summary().items()},
                }
                for c, r in results.items()
            },
            "published_all": PUBLISHED_ALL,
            "runs": args.runs,
            "model": args.model,
        }
        print(json.dumps(out))
    return 0
