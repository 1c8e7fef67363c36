"""The ``loopbreak`` command: serving, the demo, retraining, OPE and benchmarks.

Heavy imports happen inside each subcommand, so ``loopbreak --help`` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger("loopbreak")


def _fmt(value: float | None, width: int = 8) -> str:
    return f"{value:>{width}.4f}" if value is not None else f"{'-':>{width}}"


def _cmd_demo(args: argparse.Namespace) -> int:
    from loop.demo import DemoConfig, RoundResult, demo_json, run_demo
    from sim import WorldConfig

    config = DemoConfig(
        rounds=args.rounds,
        decisions_per_round=args.decisions,
        k=args.k,
        epsilon=args.epsilon,
        seed=args.seed,
        model=args.model,
        holdout_share=args.holdout_share,
        world=WorldConfig(seed=args.seed, n_items=args.items, n_users=args.users),
    )
    header = (
        f"{'round':>5}  {'policy':<34} {'true':>8} {'ips':>8} {'ips 95% CI':>19} "
        f"{'snips':>8} {'unsupp':>8} {'oracle':>8} {'coverage':>8}"
    )
    print("loopbreak demo: the loop on the simulated world (reward = expected plays per slate)")
    print(header)
    print("-" * len(header))

    def show(r: RoundResult) -> None:
        ci = f"[{r.ips_lo:7.3f}, {r.ips_hi:7.3f}]" if r.ips_lo is not None else "-"
        print(
            f"{r.round:>5}  {r.policy:<34} {_fmt(r.true_reward)} {_fmt(r.ips)} {ci:>19} "
            f"{_fmt(r.snips)} {_fmt(r.unsupported)} {_fmt(r.oracle_reward)} {_fmt(r.coverage)}",
            flush=True,
        )

    results = run_demo(args.out, config, on_round=show)
    out = Path(args.out)
    (out / "demo.json").write_text(json.dumps(demo_json(results, config), indent=2))
    print(f"\nwrote {out / 'demo.json'}, {out / 'demo.db'} and {out / 'model.npz'}")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from api.app import create_app
    from api.settings import Settings

    overrides: dict[str, Any] = {}
    if args.db:
        overrides["database_url"] = args.db
    if args.model:
        overrides["model_path"] = Path(args.model)
    if args.epsilon is not None:
        overrides["epsilon"] = args.epsilon
    settings = Settings(**overrides)
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level="info")
    return 0


def _cmd_retrain(args: argparse.Namespace) -> int:
    from api.settings import Settings
    from fm_core import load_scorer_file
    from loop.retrain import retrain
    from proplog.engine import init_db, make_engine

    settings = Settings(**({"database_url": args.db} if args.db else {}))
    engine = make_engine(settings.database_url)
    init_db(engine)
    # The catalog travels with the model: take it from the model being replaced.
    catalog = load_scorer_file(args.catalog_from).catalog
    result = retrain(
        engine=engine,
        catalog=catalog,
        out=Path(args.out),
        version=args.version,
        model=args.model,
    )
    print(
        f"model {result.version}: {result.decisions} decisions, {result.impressions} "
        f"impressions, {result.plays} plays -> {result.path}"
    )
    return 0


def _cmd_ope_estimate(args: argparse.Namespace) -> int:
    from ope import Bounds, OpeInputError, estimators, read_batches
    from ope.streaming import finish_all, stream_partials

    path = Path(args.input)
    if not path.exists():
        print(f"error: --input {path} does not exist", file=sys.stderr)
        return 2
    try:
        chosen = estimators(
            dros_lambda=args.dros_lambda, switch_tau=args.switch_tau, clip=args.clip
        )
        bounds = Bounds(
            reward_min=args.reward_range[0], reward_max=args.reward_range[1],
            weight_max=args.weight_max,
        )  # fmt: skip
        n_bootstrap = args.bootstrap if args.interval == "bootstrap" else 0
        partials, n_rows = stream_partials(
            read_batches(path, chunk_rows=args.chunk_rows), chosen,
            n_bootstrap=n_bootstrap, seed=args.seed,
        )  # fmt: skip
        estimates = finish_all(
            partials, chosen, alpha=args.alpha, interval=args.interval, bounds=bounds
        )
    except OpeInputError as exc:
        print(f"error: {path}: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # a bad option: --alpha, --dros-lambda, --interval, bounds, ...
        print(f"error: {exc}", file=sys.stderr)
        return 2
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
        print(
            json.dumps(
                {
                    "estimates": {
                        name: {
                            "value": e.value,
                            "lo": e.lo,
                            "hi": e.hi,
                            "ess": e.diagnostics["ess"],
                        }
                        for name, e in estimates.items()
                    }
                }
            )
        )
    return 0


def _cmd_ope_coverage(args: argparse.Namespace) -> int:
    from cli.ope_coverage import coverage_heading, run_coverage
    from ope.coverage import coverage_table

    try:
        result = run_coverage(args)
    except ValueError as exc:  # a bad option: --reps, --k, --alpha, ...
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(coverage_heading(result))
    print(coverage_table(result))
    if args.json:
        print(json.dumps(result.as_json()))
    return 0


_BENCH_GENERIC = frozenset({"command", "func", "verbose", "name", "json"})


def _cmd_ope_obd(args: argparse.Namespace) -> int:
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


def _cmd_bench(args: argparse.Namespace) -> int:
    module = importlib.import_module(f"bench.{args.name}")
    options = {k: v for k, v in vars(args).items() if k not in _BENCH_GENERIC}
    result = module.run(**options)
    print(module.table(result))
    if args.json:
        print(json.dumps(result))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from bench import BENCHMARKS
    from ope.estimators import N_BOOTSTRAP
    from ope.intervals import INTERVALS
    from ope.streaming import CHUNK_ROWS
    from ope.suite import DROS_LAMBDA, SWITCH_TAU

    parser = argparse.ArgumentParser(
        prog="loopbreak",
        description="Exploration, propensity logging and off-policy evaluation around a "
        "recommender.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="run the loop on the simulated world and SQLite")
    demo.add_argument("--out", default="out", help="output directory (default: ./out)")
    demo.add_argument("--rounds", type=int, default=5, help="rounds, the first one uniform")
    demo.add_argument("--decisions", type=int, default=1500, help="decisions per round")
    demo.add_argument("--k", type=int, default=10, help="slate size")
    demo.add_argument("--epsilon", type=float, default=0.1, help="exploration rate")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--items", type=int, default=400, help="catalog size of the world")
    demo.add_argument("--users", type=int, default=300, help="users in the world")
    demo.add_argument(
        "--model",
        choices=("baseline", "fm"),
        default="baseline",
        help="scorer retrained every round: the baseline, or the foundation model with its "
        "ranker (default: %(default)s)",
    )
    demo.add_argument(
        "--holdout-share",
        type=float,
        default=0.3,
        help="share of the previous round the model does not train on, for the off-policy "
        "estimate made before serving (default: %(default)s)",
    )
    demo.set_defaults(func=_cmd_demo)

    serve = sub.add_parser("serve", help="serve the decision and event API")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--db", help="database URL (default: $LOOPBREAK_DATABASE_URL or SQLite)")
    serve.add_argument("--model", help="model file (default: out/model.npz)")
    serve.add_argument("--epsilon", type=float, help="exploration rate (default 0.1)")
    serve.set_defaults(func=_cmd_serve)

    retrain = sub.add_parser("retrain", help="learn a new model version from the logs")
    retrain.add_argument("--db", help="database URL (default: $LOOPBREAK_DATABASE_URL or SQLite)")
    retrain.add_argument("--out", required=True, help="where to write the new model (.npz)")
    retrain.add_argument(
        "--catalog-from", default="out/model.npz", help="model whose item catalog to use"
    )
    retrain.add_argument("--version", help="version name (default: <model>-<UTC time>)")
    retrain.add_argument(
        "--model",
        choices=("baseline", "fm"),
        default="baseline",
        help="what to fit: the baseline, or the foundation model with its ranker",
    )
    retrain.set_defaults(func=_cmd_retrain)

    ope = sub.add_parser("ope", help="off-policy evaluation")
    ope_sub = ope.add_subparsers(dest="ope_command", required=True, metavar="OPE_COMMAND")
    estimate = ope_sub.add_parser(
        "estimate", help="estimate a policy's value from a Parquet/CSV file of logged rows"
    )
    estimate.add_argument(
        "--input",
        required=True,
        help="columns reward, pscore, target_pscore [, decision_id, slot, q_hat, v_hat, "
        "pscore_slate, target_pscore_slate, pscore_cascade, target_pscore_cascade, "
        "target_pscore_item]; q_hat is the reward model at the logged action, v_hat the reward "
        "model averaged over the target policy; the slate columns are whole-slate and prefix "
        "probabilities, and the target's probability of the row's item at any position (the "
        "pseudo-inverse estimator pi, for uniform logging)",
    )
    estimate.add_argument("--alpha", type=float, default=0.05, help="1 - interval level")
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
    estimate.add_argument(
        "--chunk-rows",
        type=int,
        default=CHUNK_ROWS,
        help="rows read at a time; any size gives the same answer (default %(default)s)",
    )
    estimate.add_argument("--json", action="store_true", help="end with one JSON line")
    estimate.set_defaults(func=_cmd_ope_estimate)

    obd = ope_sub.add_parser(
        "obd", help="estimate BTS from the Open Bandit Dataset's random logs; relative errors"
    )
    obd.add_argument("--campaign", choices=("all", "men", "women"), help="default: all three")
    obd.add_argument("--runs", type=int, default=10, help="bootstrap runs (default 10)")
    obd.add_argument("--model", choices=("logistic", "gbdt"), default="logistic")
    obd.add_argument("--seed", type=int, default=12345)
    obd.add_argument("--json", action="store_true", help="end with one JSON line")
    obd.set_defaults(func=_cmd_ope_obd)

    coverage = ope_sub.add_parser(
        "coverage",
        help="coverage of every estimator's intervals over repeated runs in the simulated world",
    )
    from cli.ope_coverage import add_arguments as add_coverage_arguments

    add_coverage_arguments(coverage)
    coverage.set_defaults(func=_cmd_ope_coverage)

    from cli.ope_analyst import add_parsers as add_analyst_parsers

    add_analyst_parsers(ope_sub, sub)  # ope report, ope gate, ab analyze

    from cli.tune import add_parsers as add_tune_parsers

    add_tune_parsers(sub)  # tune search-weight

    bench = sub.add_parser("bench", help="benchmarks, ours beside a baseline")
    bench_sub = bench.add_subparsers(dest="name", required=True, metavar="NAME")
    for name in BENCHMARKS:
        module = importlib.import_module(f"bench.{name}")
        one = bench_sub.add_parser(name, help=(module.__doc__ or "").strip().splitlines()[0])
        one.add_argument("--json", action="store_true", help="end with one JSON line")
        add_arguments = getattr(module, "add_arguments", None)
        if add_arguments is not None:  # the benchmark's own options, passed to its run()
            add_arguments(one)
        one.set_defaults(func=_cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
