"""``loopbreak tune search-weight``: its options (defaults from ``SimTuneConfig``,
``LogTuneConfig`` and ``WorldConfig``), the run through :func:`loop.tune.tune_search_weight`, and
the curve's table.

The tuning itself (pandas, the store, the simulator, the scorer) is imported only when the
command runs, so that ``loopbreak --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from cli.common import MODEL_FILE, add_json, config_option, default_of
from loop.tune_config import DEFAULT_ALPHAS, LogTuneConfig, SimTuneConfig, check_alphas
from sim.config import WorldConfig

if TYPE_CHECKING:
    from loop.tune import TuneResult


def parse_alphas(text: str) -> tuple[float, ...]:
    """``"0,0.5,1"`` as a tuple of finite numbers >= 0."""
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--alphas must be comma-separated numbers; got {text!r}"
        ) from None
    try:
        check_alphas(values)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--alphas must be one or more finite numbers >= 0; got {text!r}"
        ) from None
    return values


def add_parser(sub: Any) -> None:
    tune = sub.add_parser("tune", help="tune the training table's settings on held-out data")
    tune_sub = tune.add_subparsers(dest="setting", required=True, metavar="SETTING")
    parser = tune_sub.add_parser(
        "search-weight", help="pick α, the training weight of search-discovered plays"
    )
    grid = ",".join(f"{a:g}" for a in DEFAULT_ALPHAS)
    parser.add_argument(
        "--alphas",
        type=parse_alphas,
        default=DEFAULT_ALPHAS,
        help=f"comma-separated grid of α (default: {grid})",
    )
    config_option(parser, "--decisions", SimTuneConfig, help="simulated logged decisions")
    config_option(parser, "--heldout", SimTuneConfig, help="simulated held-out requests")
    config_option(parser, "--items", WorldConfig, "n_items", "catalog size of the world")
    config_option(parser, "--users", WorldConfig, "n_users", "users of the world")
    config_option(parser, "--seed", SimTuneConfig)
    logging_epsilon = default_of(SimTuneConfig, "epsilon")
    evaluated_epsilon = default_of(LogTuneConfig, "epsilon")
    parser.add_argument(
        "--epsilon",
        type=float,
        default=None,
        help=f"simulator: the logging policy's ε (default {logging_epsilon:g}, uniform); logs: "
        f"the evaluated policy's ε (default {evaluated_epsilon:g})",
    )
    parser.add_argument(
        "--database", default=None, help="tune on the real log at this URL instead (OPE)"
    )
    parser.add_argument(
        "--catalog-from",
        default=MODEL_FILE,
        help="with --database: the model whose catalog",
    )
    config_option(parser, "--holdout-share", LogTuneConfig, help="with --database")
    add_json(parser, "print the result as JSON, last")
    parser.set_defaults(func=run_search_weight)


def _config(args: argparse.Namespace) -> SimTuneConfig | LogTuneConfig:
    """The run the options ask for: on the log with ``--database``, else on the simulator."""
    epsilon = {} if args.epsilon is None else {"epsilon": args.epsilon}  # else each one's own
    if args.database:
        return LogTuneConfig(
            database=args.database,
            catalog_from=args.catalog_from,
            alphas=args.alphas,
            holdout_share=args.holdout_share,
            **epsilon,
        )
    return SimTuneConfig(
        alphas=args.alphas,
        decisions=args.decisions,
        heldout=args.heldout,
        seed=args.seed,
        **epsilon,
        world=WorldConfig(seed=args.seed, n_items=args.items, n_users=args.users),
    )


def search_weight_table(result: TuneResult) -> str:
    """The curve, one row an α (the best one marked), then the references."""
    lines = [f"search-play weight α by {result.quality}"]
    lines.append(f"{'alpha':>8}{'quality':>12}{'interval':>22}{'search rows':>13}{'rows':>9}")
    for p in result.curve:
        interval = "" if p.lo is None else f"[{p.lo:.4f}, {p.hi:.4f}]"
        best = "  <- best" if p.alpha == result.alpha else ""
        lines.append(
            f"{p.alpha:>8g}{p.quality:>12.4f}{interval:>22}{p.search_rows:>13}"
            f"{p.training_rows:>9}{best}"
        )
    for name, value in result.references.items():
        lines.append(f"{name:>8}{value:>12.4f}")
    return "\n".join(lines)


def run_search_weight(args: argparse.Namespace) -> int:
    """``loopbreak tune search-weight``: print the curve (and ``--json``, the result, last)."""
    from loop.tune import tune_search_weight

    result = tune_search_weight(_config(args))
    print(search_weight_table(result))
    if args.json:
        print(json.dumps(result.as_dict()))
    return 0
