"""The ``loopbreak tune`` command line: its arguments, parsed without importing the tuning.

Kept apart from :mod:`loop.tune` (which imports pandas, the store, the simulator and the scorer)
so that ``loopbreak --help`` stays fast; the command imports the tuning only when it runs.
"""

from __future__ import annotations

import argparse
import math

from loop.tune import DEFAULT_ALPHAS


def parse_alphas(text: str) -> tuple[float, ...]:
    """``"0,0.5,1"`` as a tuple of finite numbers >= 0."""
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--alphas must be comma-separated numbers; got {text!r}"
        ) from None
    if not values or any(not math.isfinite(v) or v < 0 for v in values):
        raise argparse.ArgumentTypeError(
            f"--alphas must be one or more finite numbers >= 0; got {text!r}"
        )
    return values


def add_search_weight_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--alphas",
        type=parse_alphas,
        default=DEFAULT_ALPHAS,
        help="comma-separated grid of α (default: 0,0.5,1,2,4,8,16,32,64)",
    )
    parser.add_argument("--decisions", type=int, default=2000, help="simulated logged decisions")
    parser.add_argument("--heldout", type=int, default=600, help="simulated held-out requests")
    parser.add_argument("--items", type=int, default=400, help="catalog size of the world")
    parser.add_argument("--users", type=int, default=300, help="users of the world")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--epsilon",
        type=float,
        default=None,
        help="simulator: the logging policy's ε (default 1, uniform); logs: the evaluated "
        "policy's ε (default 0.1)",
    )
    parser.add_argument(
        "--database", default=None, help="tune on the real log at this URL instead (OPE)"
    )
    parser.add_argument(
        "--catalog-from", default="out/model.npz", help="with --database: the model whose catalog"
    )
    parser.add_argument("--holdout-share", type=float, default=0.2, help="with --database")
    parser.add_argument("--json", action="store_true", help="print the result as JSON, last")


def run_search_weight(args: argparse.Namespace) -> int:
    """``loopbreak tune search-weight``."""
    from loop.tune import run_search_weight_command

    return run_search_weight_command(args)


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """``loopbreak tune search-weight``."""
    tune = sub.add_parser("tune", help="tune the training table's settings on held-out data")
    tune_sub = tune.add_subparsers(dest="setting", required=True, metavar="SETTING")
    search_weight = tune_sub.add_parser(
        "search-weight", help="pick α, the training weight of search-discovered plays"
    )
    add_search_weight_arguments(search_weight)
    search_weight.set_defaults(func=run_search_weight)
